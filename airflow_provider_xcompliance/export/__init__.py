"""Step 2: the archive's own IDs, exported as a canonical ID file (one ID per line) to any object
store, atomically and streaming. ``sql`` reads SQL tables, ``files`` JSON Lines and Parquet data
sets; both check every ID by the upload's own rules and name where a bad one is stored."""
