"""The logger this provider's code writes to, as a type."""

from __future__ import annotations

from typing import Protocol


class Log(Protocol):
    """What the provider logs through: a stdlib ``logging.Logger`` (module loggers, tests) or the
    ``self.log`` of an Airflow hook or operator, whose type depends on the Airflow version (a
    structlog logger in 3.3). Only the methods used here, with %-style arguments."""

    def info(self, msg: str, /, *args: object) -> object: ...

    def warning(self, msg: str, /, *args: object) -> object: ...

    def error(self, msg: str, /, *args: object) -> object: ...

    def exception(self, msg: str, /, *args: object) -> object: ...
