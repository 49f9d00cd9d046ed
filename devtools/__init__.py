"""The project's own tools, run by ``./dev`` from the checkout; not part of the installed package."""
