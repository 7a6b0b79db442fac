"""Canvas and Moodle in the classroom loop: their download names in, their grade CSV and feedback zip out.

A "download all submissions" zip names each file after its student; this module reads those names, maps
them to nbgrader student ids through a roster, and writes the two files each LMS takes back. The formats,
as each LMS's own source writes and reads them:

* Canvas (``lib/content_zipper.rb``): flat entries ``{name}[_LATE]_{user_id}_{attachment_id}_{file}``, name
  the lower-cased sortable name without punctuation (``doejane``), ``LATE`` when Canvas counted the submission
  late; under anonymous grading ``[LATE_]anon_{anonymous_id}`` in place of name, marker and user id
  (``get_filename``); a text entry is
  ``{name}_{user_id}_text.html``. A file uploaded under a name already used gets ``-1``, ``-2`` before its
  extension (``Attachment.make_unique_filename``). "Re-upload submissions" reads the first two all-digit
  ``_``-separated fields of each name as user id and attachment id (``infer_comment_context_from_filename``).
  The gradebook import (``GradebookImporter``) wants ``Student,ID,SIS User ID,SIS Login ID,Section`` then one
  column per assignment, ``Title`` or ``Title (id)``; an unknown column becomes a new assignment.
* Moodle (``mod/assign``): a folder per student and plugin, ``{Full Name}_{participant_id}_assignsubmission_file``
  (with a trailing ``_`` before Moodle 4.1), or flat ``..._assignsubmission_file_{file}`` when "download as
  folders" is off; online text is ``..._assignsubmission_onlinetext/onlinetext.html``; ``_`` in a name
  becomes a space; "Participant" replaces the name under blind marking. The participant id is per assignment,
  so students are matched by name. "Upload multiple feedback files in a zip" reads the same folder names
  back. The grade import ("CSV file") maps one identifier column (Email address) and one grade column;
  a blank grade is "no grade"; a row whose user it cannot find stops the whole import.

Neither LMS writes a submission time into the names, so nbgrader's late penalties cannot apply; Canvas's
``LATE`` marker is kept in the manifest (``lms_manifest.csv``) instead.
"""

from __future__ import annotations

import csv
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath

from nbgrader.plugins import FileNameCollectorPlugin
from nbgrader.utils import find_all_notebooks
from traitlets import Unicode

from diffusion_internals.validation import check_choice

__all__ = [
    "LMS_NAMES",
    "ROSTER_COLUMNS",
    "Student",
    "Entry",
    "Collected",
    "Problem",
    "Plan",
    "read_roster",
    "parse_entry",
    "match_student",
    "released_name",
    "graded_names",
    "plan_collection",
    "report_lines",
    "write_manifest",
    "read_manifest",
    "feedback_entry",
    "grade_rows",
    "write_problems",
    "LmsCollector",
]

LMS_NAMES = ("canvas", "moodle")
ROSTER_COLUMNS = ("id", "first_name", "last_name", "email", "lms_user_id")  # nbgrader db student import's columns
# Reasons a file is not imported: each line of the report starts with one.
NO_MATCH, AMBIGUOUS, NOT_NOTEBOOK, UNRECOGNISED = "no roster match", "ambiguous", "not a notebook", "unrecognised name"
DUPLICATE, SUPERSEDED = "duplicate", "older resubmission"

CANVAS_FILE = re.compile(r"(?P<name>.*?)(?P<late>_LATE)?_(?P<lms_id>\d+)_(?P<file_id>\d+)_(?P<filename>.+)")
CANVAS_TEXT = re.compile(r"(?P<name>.*?)(?P<late>_LATE)?_(?P<lms_id>\d+)_(?P<kind>text|link)\.html")
MOODLE_FOLDER = re.compile(r"(?P<name>.+?)_(?P<lms_id>\d+)_assignsubmission_(?P<kind>[a-z0-9]+)_?")
MOODLE_FLAT = re.compile(r"(?P<name>.+?)_(?P<lms_id>\d+)_assignsubmission_(?P<kind>[a-z0-9]+)_(?P<filename>.+)")
RESUBMISSION = re.compile(r"(?P<stem>.+)-(?P<n>\d+)")
CANVAS_ANONYMOUS = re.compile(r"(LATE_)?anon_")  # get_filename: ["LATE", "anon_<id>"] joined by "_"


@dataclass(frozen=True)
class Student:
    """A roster row, in the columns of ``nbgrader db student import``."""

    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""


@dataclass(frozen=True)
class Entry:
    """One file of a download as its name tells: who (LMS id, name), which file, late or not."""

    path: str  # inside the zip, "/"-separated
    lms: str
    name: str  # Canvas: doejane; Moodle: Jane Doe
    lms_id: str  # Canvas user id; Moodle participant id (per assignment)
    filename: str  # the student's file name ("" for a Canvas text or link entry)
    kind: str = "file"  # Moodle's plugin (file, onlinetext) or Canvas's text/link
    file_id: str = ""  # Canvas attachment id
    late: bool = False


@dataclass(frozen=True)
class Collected:
    """An entry imported as submitted/<student_id>/<assignment>/<notebook>."""

    student_id: str
    notebook: str
    entry: Entry
    resubmission: int = 0  # Canvas's -N


@dataclass(frozen=True)
class Problem:
    """An entry not imported, and why: `reason` is one of the constants above, `detail` says what to do."""

    path: str
    reason: str
    detail: str


@dataclass
class Plan:
    collected: list[Collected]
    unmatched: list[Problem]
    superseded: list[Problem]


def normal_name(name: str) -> str:
    """A name as Moodle writes it and as a roster types it, compared: NFKC, ``_`` as space, casefolded, one space."""
    return " ".join(unicodedata.normalize("NFKC", name).replace("_", " ").casefold().split())


def read_roster(path: Path) -> list[Student]:
    """The roster CSV (``id,first_name,last_name,email,lms_user_id``), checked: every column, unique non-empty ids."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ROSTER_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"roster {path} must have the columns {list(ROSTER_COLUMNS)}; missing {missing}")
        students = [Student(**{c: (row[c] or "").strip() for c in ROSTER_COLUMNS}) for row in reader]
    ids = [s.id for s in students]
    if "" in ids or len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"roster {path}: every row needs its own non-empty id; empty or repeated: {repeated}")
    return students


def parse_entry(path: str) -> Entry | None:
    """The entry of a Canvas or Moodle download that `path` names, or None for a name neither LMS writes."""
    first, _, rest = path.partition("/")
    match = MOODLE_FOLDER.fullmatch(first) if rest else MOODLE_FLAT.fullmatch(first)
    if match:
        filename = rest or match["filename"]
        return Entry(path, "moodle", match["name"], match["lms_id"], filename, kind=match["kind"])
    if rest:
        return None  # Canvas entries are flat: this lies in a folder (a zip a student uploaded, extracted)
    if match := CANVAS_FILE.fullmatch(path):
        who = {"name": match["name"], "lms_id": match["lms_id"], "late": bool(match["late"])}
        return Entry(path, "canvas", filename=match["filename"], file_id=match["file_id"], **who)
    if match := CANVAS_TEXT.fullmatch(path):
        who = {"name": match["name"], "lms_id": match["lms_id"], "late": bool(match["late"])}
        return Entry(path, "canvas", filename="", kind=match["kind"], **who)
    return None


def match_student(entry: Entry, roster: list[Student]) -> Student | Problem:
    """The roster row of an entry: Canvas by user id (lms_user_id), Moodle by full name; never a guess."""
    if entry.lms == "canvas":
        found = [s for s in roster if s.lms_user_id == entry.lms_id]
        who = f"Canvas user id {entry.lms_id} ({entry.name})"
        where = "lms_user_id"
    else:
        found = [s for s in roster if normal_name(f"{s.first_name} {s.last_name}") == normal_name(entry.name)]
        who = f"Moodle name {entry.name!r}"
        where = "first_name last_name"
    if len(found) == 1:
        return found[0]
    if found:
        ids = ", ".join(s.id for s in found)
        return Problem(entry.path, AMBIGUOUS, f"{who} matches several roster rows ({ids}); copy it by hand")
    return Problem(entry.path, NO_MATCH, f"{who} is no roster row's {where}; add the student to the roster")


def released_name(entry: Entry, released: list[str]) -> tuple[str, int]:
    """The released notebook an entry's file is, and its Canvas resubmission number (0 for the first)."""
    name = PurePosixPath(entry.filename).name
    suffix = PurePosixPath(name).suffix
    match = RESUBMISSION.fullmatch(name[: -len(suffix)] if suffix else name)
    if name in released or entry.lms != "canvas" or not match:
        return name, 0
    return match["stem"] + suffix, int(match["n"])


def graded_names(submitted: list[str], released: list[str]) -> dict[str, str | None]:
    """The name autograde grades each notebook under: its own if released, else the one missing released name when
    exactly one is missing and one other name is there (scripts/autograde.py, ``preflight``), else None."""
    missing = [n for n in released if n not in submitted]
    extra = [n for n in submitted if n not in released]
    renamed = {extra[0]: missing[0]} if len(missing) == 1 and len(extra) == 1 else {}
    return {n: n if n in released else renamed.get(n) for n in submitted}


def unimportable(entry: Entry | None, path: str) -> Problem | None:
    """Why an entry cannot be a submission whoever sent it (no name to read, no notebook), or None."""
    if CANVAS_ANONYMOUS.match(path) or (entry and (entry.lms, entry.name) == ("moodle", "Participant")):
        why = "Canvas anonymous grading (until grades are posted) or Moodle blind marking hides the student"
        return Problem(path, UNRECOGNISED, f"{why}; download again with names shown, or copy it by hand")
    if entry is None:
        return Problem(path, UNRECOGNISED, "neither a Canvas nor a Moodle submission name; copy it by hand")
    if entry.kind != "file" or not entry.filename.endswith(".ipynb"):
        what = entry.filename or f"a {entry.kind} submission"
        return Problem(path, NOT_NOTEBOOK, f"{what} is not a .ipynb notebook; nothing to grade")
    return None


def newest(candidates: list[Collected]) -> tuple[list[Collected], list[Problem]]:
    """Per student and notebook the newest resubmission (highest -N, then Canvas attachment id); the rest reported."""
    groups: dict[tuple[str, str], list[Collected]] = {}
    for c in candidates:
        groups.setdefault((c.student_id, c.notebook), []).append(c)
    kept, dropped = [], []

    def rank(c: Collected) -> tuple[int, int]:
        return c.resubmission, int(c.entry.file_id or 0)

    for group in groups.values():
        group.sort(key=rank, reverse=True)
        if len(group) > 1 and rank(group[0]) == rank(group[1]):
            names = ", ".join(c.entry.path for c in group)
            dropped += [Problem(c.entry.path, DUPLICATE, f"cannot tell which is newest of {names}") for c in group]
            continue
        kept.append(group[0])
        dropped += [Problem(c.entry.path, SUPERSEDED, f"superseded by {group[0].entry.path}") for c in group[1:]]
    return kept, dropped


def plan_collection(paths: list[str], roster: list[Student], released: list[str]) -> Plan:
    """Which entry of a download goes where: the newest notebook per student and notebook, the rest with a reason."""
    candidates, unmatched = [], []
    for path in sorted(paths):
        entry = parse_entry(path)
        problem = unimportable(entry, path)
        student = problem or match_student(entry, roster)
        if isinstance(student, Problem):
            unmatched.append(student)
            continue
        notebook, resubmission = released_name(entry, released)
        candidates.append(Collected(student.id, notebook, entry, resubmission))
    kept, dropped = newest(candidates)
    return Plan(
        sorted(kept, key=lambda c: (c.student_id, c.notebook)),
        unmatched + [p for p in dropped if p.reason == DUPLICATE],
        [p for p in dropped if p.reason == SUPERSEDED],
    )


def renamed_lines(collected: list[Collected], released: list[str]) -> list[str]:
    """Notebooks imported under a name that is not a released one, and the name autograde grades them under."""
    out = []
    for student in sorted({c.student_id for c in collected}):
        for name, graded in graded_names([c.notebook for c in collected if c.student_id == student], released).items():
            if graded is None:
                out.append(f"  {student}/{name}: not graded (released: {', '.join(released)}); rename it in submitted/")
            elif graded != name:
                out.append(f"  {student}/{name}: will be graded as {graded} (its feedback page too)")
    return out


def report_lines(plan: Plan, *, manifest: str, released: list[str]) -> list[str]:
    """What collect-zip did, for the instructor: imported, renamed, older resubmissions, every file NOT imported."""
    students = {c.student_id for c in plan.collected}
    out = [f"Imported {len(plan.collected)} notebook(s) of {len(students)} student(s) into submitted/:"]
    out += [
        f"  {c.student_id}/{c.notebook} <- {c.entry.path}{'  (LATE)' if c.entry.late else ''}" for c in plan.collected
    ]
    if renamed := renamed_lines(plan.collected, released):
        out += ["Not a released notebook name (autograde grades one such notebook under the one missing name):"]
        out += renamed
    if plan.superseded:
        out += ["Older resubmissions, not imported:"]
        out += [f"  {p.path}: {p.detail}" for p in plan.superseded]
    if plan.unmatched:
        out += [f"NOT IMPORTED: {len(plan.unmatched)} file(s); import them by hand or fix the roster and run again:"]
        out += [f"  {p.path}: {p.reason}: {p.detail}" for p in plan.unmatched]
    out += [
        "Submission times: Canvas and Moodle file names carry none, so nbgrader applies no late penalty; "
        f"Canvas's LATE marker is in {manifest}."
    ]
    return out


MANIFEST_COLUMNS = ("student_id", "lms", "entry", "notebook", "late", "lms_id", "file_id")


def write_manifest(path: Path, collected: list[Collected]) -> None:
    """Record where each imported notebook came from, keeping other students' and other LMSs' earlier rows."""
    new = [
        {"student_id": c.student_id, "notebook": c.notebook, "late": "yes" if c.entry.late else ""}
        | {"lms": c.entry.lms, "entry": c.entry.path, "lms_id": c.entry.lms_id, "file_id": c.entry.file_id}
        for c in collected
    ]
    replaced = {(row["lms"], row["student_id"]) for row in new}
    old = [row for row in read_manifest(path) if (row["lms"], row["student_id"]) not in replaced]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(old + new, key=lambda row: (row["lms"], row["student_id"], row["notebook"])))


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The manifest's rows (none if there is no manifest yet)."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def feedback_entry(entry: str) -> str:
    """The name under which an LMS attaches a feedback page to the student whose download entry was `entry`."""
    return str(PurePosixPath(entry).with_suffix(".html"))


def grade_cell(score: float | None) -> str:
    """A score as the LMS imports it (two decimals at most); blank for no submission: no grade, not 0."""
    return "" if score is None else f"{round(score, 2):g}"


def sortable_name(student: Student) -> str:
    """Canvas's sortable name, "Last, First", which its import matches when a row has no user id."""
    return ", ".join(n for n in (student.last_name, student.first_name) if n)


def grade_rows(lms: str, scores: dict[Student, float | None], *, column: str, max_score: float) -> list[list[str]]:
    """The grades CSV that `lms` imports (header first): Canvas by user id, Moodle by email address."""
    check_choice("lms", lms, LMS_NAMES)
    ordered = sorted(scores, key=lambda s: (normal_name(s.last_name), normal_name(s.first_name), s.id))
    if lms == "canvas":
        head = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column]]
        head += [["Points Possible", "", "", "", "", grade_cell(max_score)]]
        return head + [[sortable_name(s), s.lms_user_id, "", "", "", grade_cell(scores[s])] for s in ordered]
    head = [["First name", "Last name", "Email address", column]]
    return head + [[s.first_name, s.last_name, s.email, grade_cell(scores[s])] for s in ordered if s.email]


def extracted_entries(extracted: Path, archives: Path) -> dict[str, Path]:
    """Each extracted file by its name inside the download (nbgrader extracts archive/X.zip into extracted/X/)."""
    found = {}
    for file in sorted(p for p in extracted.rglob("*") if p.is_file()):
        parts = file.relative_to(extracted).parts
        if len(parts) > 1 and (archives / f"{parts[0]}.zip").is_file():
            parts = parts[1:]
        found["/".join(parts)] = file
    return found


class LmsCollector(FileNameCollectorPlugin):
    """nbgrader zip_collect's collector for Canvas and Moodle downloads (``--collector=`` this class).

    It plans the whole download on its first file (which notebook is newest needs them all), writes the
    manifest and the report beside ``extracted/``, and tells nbgrader the student and notebook of each file
    it imports; nbgrader skips the others.
    """

    roster = Unicode("", help="The roster CSV: id,first_name,last_name,email,lms_user_id").tag(config=True)

    def collect(self, submitted_file: str) -> dict | None:
        if not hasattr(self, "_destinations"):
            self._destinations = self.plan_download()
        return self._destinations.get(os.path.abspath(submitted_file))

    def plan_download(self) -> dict[str, dict]:
        """Plan the download, record it (lms_manifest.csv, lms_report.txt) and map each file to its destination."""
        if not self.roster:
            raise ValueError(f"LmsCollector.roster must name the roster CSV ({','.join(ROSTER_COLUMNS)}), got ''")
        app = self.parent
        extracted = Path(app._format_collect_path(app.extracted_directory))  # nbgrader's own path helper
        archives = Path(app._format_collect_path(app.archive_directory))
        assignment = app.coursedir.assignment_id
        released = find_all_notebooks(app.coursedir.format_path(app.coursedir.release_directory, ".", assignment))
        entries = extracted_entries(extracted, archives)
        plan = plan_collection(list(entries), read_roster(Path(self.roster)), released)
        manifest = extracted.parent / "lms_manifest.csv"
        write_manifest(manifest, plan.collected)
        report = report_lines(plan, manifest=str(manifest.relative_to(app.coursedir.root)), released=released)
        (extracted.parent / "lms_report.txt").write_text("\n".join(report) + "\n", encoding="utf-8")
        write_problems(extracted.parent / "lms_unmatched.csv", plan.unmatched)
        return {
            os.path.abspath(entries[c.entry.path]): {"student_id": c.student_id, "file_id": c.notebook}
            for c in plan.collected
        }


def write_problems(path: Path, problems: list[Problem]) -> None:
    """The files not imported (path, reason, detail): what collect-zip's exit status counts."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, [f.name for f in fields(Problem)])
        writer.writeheader()
        writer.writerows(asdict(p) for p in problems)
