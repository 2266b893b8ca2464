"""Messages with a stable code: the English text for the API and logs, the code and its
parameters for pages that say it in the reader's language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="CodedText")


class CodedText(str):
    """A str holding the English text of `MESSAGES[code]` filled with `params`.

    Subclasses name their catalog (`MESSAGES`) and may say how a parameter reads in English
    (`english`) or what the code keeps of the parameters (`kept`).
    """

    MESSAGES: ClassVar[Mapping[str, str]] = {}
    code: str
    params: dict[str, str]

    def __new__(cls: type[C], code: str, **params: object) -> C:
        """The message `code` (a key of MESSAGES) with its parameters."""
        values = {name: str(value) for name, value in params.items()}
        self = super().__new__(cls, cls.MESSAGES[code].format_map(cls.english(values)))
        self.code = code
        self.params = cls.kept(values, params)
        return self

    @classmethod
    def english(cls, values: dict[str, str]) -> dict[str, str]:
        """The parameters as the English text says them."""
        return values

    @classmethod
    def kept(cls, values: dict[str, str], given: Mapping[str, object]) -> dict[str, str]:
        """The parameters kept beside the code."""
        del given
        return values

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), str(self), self.code, self.params))


def _restore(cls: type[C], text: str, code: str, params: dict[str, str]) -> C:
    self = str.__new__(cls, text)
    self.code = code
    self.params = params
    return self
