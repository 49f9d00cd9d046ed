"""The rules of applying results to a SQL archive, written plainly for tests: what every table
must hold afterwards, computed from the stored rows and the results, never from the code under
test. Tweets are ``(id, author_id, edit_root_id, place)``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def strongest(*changes: str | None) -> str | None:
    """delete wins over scrub_geo."""
    given = [c for c in changes if c]
    return "delete" if "delete" in given else (given[0] if given else None)


def tweet_changes(tweets: Iterable[tuple], flagged: Mapping[int, str]) -> dict[int, str]:
    """Each stored tweet's change: its own flag's, or its edit chain's strongest (a chain takes
    the flags of its stored versions and of its first ID, stored or not)."""
    tweets = list(tweets)
    chain: dict[int, str | None] = {}
    for tweet_id, _, root, _ in tweets:
        if root is not None:
            chain[root] = strongest(chain.get(root), flagged.get(tweet_id), flagged.get(root))
    changes = {}
    for tweet_id, _, root, _ in tweets:
        change = strongest(flagged.get(tweet_id), chain.get(root) if root is not None else None)
        if change:
            changes[tweet_id] = change
    return changes


def archive_after(
    tables: Mapping[str, set[tuple]],
    tweet_flags: Mapping[int, str] | None = None,
    removed_users: set[int] | None = None,
) -> dict[str, set[tuple]]:
    """``tables`` (tweets, users, tweet_media, tweet_places, user_bios) after a users job that
    removes ``removed_users`` and then a tweets job with ``tweet_flags`` ({id: change})."""
    removed_users = removed_users or set()
    tweets = {t for t in tables["tweets"] if t[1] not in removed_users}
    changes = tweet_changes(tweets, tweet_flags or {})
    deleted = {t[0] for t in tables["tweets"]} - {t[0] for t in tweets}
    deleted |= {i for i, c in changes.items() if c == "delete"}
    scrubbed = {i for i, c in changes.items() if c == "scrub_geo"}
    return {
        "tweets": {
            (t[0], t[1], t[2], None if t[0] in scrubbed else t[3]) for t in tweets if t[0] not in deleted
        },
        "users": {u for u in tables["users"] if u[0] not in removed_users},
        "tweet_media": {m for m in tables["tweet_media"] if m[0] not in deleted},
        "tweet_places": {p for p in tables["tweet_places"] if p[0] not in deleted | scrubbed},
        "user_bios": {b for b in tables["user_bios"] if b[0] not in removed_users},
    }
