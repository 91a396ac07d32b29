"""The domain list's query string: virsh list's own option names, plus host, q and output modes.

`/domains/?inactive&with-managed-save&host=lab1` means `virsh list --inactive --with-managed-save`
on lab1. A flag counts when its name is present, whatever its value, so checkbox forms and
hand-written URLs mean the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import QueryDict

from .virt import LIST_OPTIONS, DomainRecord

OUTPUT_FLAGS = ("table", "name", "uuid", "title")


class ListQueryError(ValueError):
    """The query string asks for something virsh would refuse too."""


@dataclass(frozen=True)
class ListQuery:
    options: frozenset[str] = field(default_factory=frozenset)
    host: str = ""
    text: str = ""
    outputs: frozenset[str] = field(default_factory=frozenset)
    json: bool = False

    @property
    def table(self) -> bool:
        return not (self.outputs & {"name", "uuid"})

    @property
    def show_titles(self) -> bool:
        return "title" in self.outputs

    def matches_text(self, record: DomainRecord) -> bool:
        """The text filter (q, which virsh has not): part of the VM's name or title, in any case."""
        text = self.text.casefold()
        return not text or text in record.name.casefold() or text in record.title.casefold()


OTHER_PARAMETERS = ("host", "q", "format")


def parse_list_query(params: QueryDict) -> ListQuery:
    unknown = sorted(set(params) - {*LIST_OPTIONS, *OUTPUT_FLAGS, *OTHER_PARAMETERS})
    if unknown:
        # virsh refuses an option it does not know rather than list something else than asked.
        raise ListQueryError(f"Unknown option: {', '.join(unknown)}.")
    outputs = frozenset(flag for flag in OUTPUT_FLAGS if flag in params)
    if "table" in outputs and outputs & {"name", "uuid"}:
        raise ListQueryError("Only one of table, name and uuid may be given (name and uuid may go together).")
    output_format = params.get("format", "html")
    if output_format not in ("html", "json"):
        raise ListQueryError("format must be html or json.")
    return ListQuery(
        options=frozenset(option for option in LIST_OPTIONS if option in params),
        host=params.get("host", "").strip(),
        text=params.get("q", "").strip(),
        outputs=outputs,
        json=output_format == "json",
    )
