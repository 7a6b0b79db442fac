"""nbgrader's exchange collect, checked: a submission is the student's only if the student's account made it.

On a shared server every student can write into the exchange's inbound folder, and nbgrader names a submission's
folder ``<student>+<assignment>+<time>+<random>`` from what the submitting process says: ``nbgrader submit
--student=victim`` files one under another's name, and a folder made by hand can claim any time. nbgrader's own
collect only warns when the owner differs, then collects the newest folder per name, so a forged one would
replace the victim's work. :class:`OwnerCheckedCollect` (``c.ExchangeFactory.collect`` in nbgrader_config.py):

* collects only folders owned by the account of the student they name (``pwd``); the others are reported, left in
  inbound, and never replace anything; a name with no account of this machine cannot be checked and is reported;
  so is a folder without what ``nbgrader submit`` writes (its time and secret: release_feedback needs the secret);
* takes the submission time from the file system where the claimed one disagrees with it by more than
  ``TOLERANCE`` seconds (a folder's change time, ctime, is set by the kernel and no user can set it back), and
  writes that time into the collected ``timestamp.txt``, which nbgrader's late penalty reads.
"""

from __future__ import annotations

import datetime
import glob
import os
import pwd
from collections import defaultdict

from nbgrader.exchange.default.collect import ExchangeCollect

__all__ = ["OwnerCheckedCollect", "TOLERANCE"]

TOLERANCE = 120.0  # seconds between the claimed submission time and the folder's ctime


class OwnerCheckedCollect(ExchangeCollect):
    """nbgrader's collect (module docstring): only the student's own submissions, at the time they were made."""

    def init_src(self) -> None:
        super().init_src()  # the course's checks, inbound_path and the due date
        student = self.coursedir.student_id or "*"
        pattern = os.path.join(self.inbound_path, f"{student}+{self.coursedir.assignment_id}+*")
        by_student: dict[str, list[dict]] = defaultdict(list)
        self.corrected: dict[str, datetime.datetime] = {}
        for path in glob.glob(pattern):
            record = self._path_to_record(path)
            if self._owned_by_student(path, record["username"]) and self._complete(path):
                self._check_time(path, record)
                by_student[record["username"]].append(record)
        self.src_records = [self._choose(records) for records in by_student.values()]

    def _owned_by_student(self, path: str, student: str) -> bool:
        owner_uid = os.stat(path).st_uid
        try:
            expected = pwd.getpwnam(student).pw_uid
        except KeyError:
            self.log.error("NOT COLLECTED: %s names %s, who has no account here to check it against", path, student)
            return False
        if owner_uid != expected:
            try:
                owner = pwd.getpwuid(owner_uid).pw_name
            except KeyError:
                owner = f"uid {owner_uid}"
            self.log.error("NOT COLLECTED: %s claims to be %s's submission but %s made it", path, student, owner)
            return False
        return True

    def _complete(self, path: str) -> bool:
        """What nbgrader submit writes beside the notebooks: release_feedback fails for the whole class without it."""
        missing = [name for name in ("timestamp.txt", "submission_secret.txt") if not os.path.isfile(f"{path}/{name}")]
        if missing:
            self.log.error("NOT COLLECTED: %s was not made by nbgrader submit (no %s)", path, " or ".join(missing))
        return not missing

    def _check_time(self, path: str, record: dict) -> None:
        # nbgrader's times are naive datetimes in UTC (utils.parse_utc).
        made = datetime.datetime.fromtimestamp(os.stat(path).st_ctime, datetime.timezone.utc).replace(tzinfo=None)
        claimed = record["timestamp"]
        if abs((claimed - made).total_seconds()) > TOLERANCE:
            self.log.error(
                "%s claims it was submitted at %s UTC, but its folder was made at %s UTC: using the latter",
                path,
                claimed,
                made,
            )
            record["timestamp"] = made
            self.corrected[os.path.join(self.inbound_path, record["filename"])] = record["timestamp"]

    def _choose(self, records: list[dict]) -> dict:
        """The newest submission, or with --before-duedate the newest before the due date (as nbgrader's collect)."""
        records = self._sort_by_timestamp(records)
        if self.duedate is not None and self.before_duedate:
            on_time = [r for r in records if r["timestamp"] <= self.duedate]
            return on_time[0] if on_time else records[0]
        return records[0]

    def do_copy(self, src: str, dest: str) -> None:
        super().do_copy(src, dest)
        if src in self.corrected:  # nbgrader reads the submission time from this file (autograde's late penalty)
            stamp = self.corrected[src].strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            with open(os.path.join(dest, "timestamp.txt"), "w", encoding="utf-8") as f:
                f.write(stamp)
