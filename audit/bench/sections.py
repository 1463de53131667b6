"""The one writer of BENCHMARKS.md: each benchmark owns a section between its own markers."""

from __future__ import annotations

from pathlib import Path


def write_marked_section(path: str | Path, section: str) -> None:
    """Put ``section`` into the Markdown file ``path``, replacing the section with the same markers.

    A section starts with its ``<!-- name begin -->`` line and ends with ``<!-- name end -->``;
    every other section of the file is kept as it is.
    """
    lines = section.strip("\n").splitlines()
    begin, end = lines[0].strip(), lines[-1].strip()
    if not (begin.startswith("<!--") and begin.endswith("begin -->") and end.endswith("end -->")):
        raise ValueError("a benchmark section must start and end with its begin/end markers")
    path = Path(path)
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nEach table below was written by the command it names, in one run.\n"
    )
    body = "\n".join(lines)
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + body + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


def publish(lines: list[str], out: str | Path | None) -> str:
    """A benchmark's section from its ``lines`` (markers included): printed, and written into ``out`` when given."""
    section = "\n".join(lines) + "\n"
    print(section)
    if out:
        write_marked_section(out, section)
    return section
