"""What the next run of a pool will read again although the files did not change, as far as the
pool tells without its source (`datapool status`, and its `--json`'s `next_run`):

- files a run could not read (`read failed: ...` in the ledger): tried again, each of them;
- images an older decoder read (runs that record no `decoder`, fingerprint.DECODER_VERSION):
  checked, and those it read otherwise (a mirrored photo, an animation) read again; which of them
  only their bytes tell (runner/upgrade.py);
- videos an older decoder read (runs that record decoder 2 or less): checked, and those whose
  display matrix mirrors, or whose timestamps jump back where it read them with --fps, read
  again; those it skipped as truncated tried again;
- videos an older decoder skipped as damaged (runs that record decoder 5 or less), as it did one
  that starts before a keyframe: tried again;
- TIFFs an older decoder read (runs that record decoder 5 or less): checked, and those it read
  black (JPEG-compressed) read again; those it skipped as damaged (a compression or samples
  FFmpeg cannot decode) tried again;
- files an older datapool recorded without a content hash: hashed once (read, not decoded);
- crop selection: images whose predictions file changed since their run are cut again; which,
  only the source's predictions files tell (runner/crops.py).

`decoder_checked` is the one rule of which runs' files an older decoder read, for the run
(runner/upgrade.py) and for this summary. A run that checks them and has nothing new to add
records that it did in runs.json's `decoder_checked` (`checked_record`), which adds no run: the
check is then not done again, by the next run or in this summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datapool.errors import PoolCorruptError
from datapool.naming import STATUS_OK, media_kind
from datapool.sources import READ_FAILED
from datapool.specs import scheme_of

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd


# The skip reason of a video whose frames end before its header's duration (ingest/decode.py
# _Integrity): decoder 2 and older gave it to whole files too (runner/upgrade.py _retry_truncated).
SKIPPED_TRUNCATED = "truncated: frames end at "

# The skip reasons decoder 3 and older gave a video that starts before a keyframe (a recording
# cut from a live stream or an IP camera, a TS whose first bytes are lost), which decoder 4 reads
# from its first keyframe (runner/upgrade.py _retry_skipped), and decoder 4 gave an HEVC MP4
# without a sync-sample table that does, which decoder 5 reads, and decoder 5 an MPEG-2 one,
# which decoder 6 reads; a damaged video gets them too.
SKIPPED_MID_GOP = (
    "damaged or truncated: ",
    "damaged after frame 0 of the video",
    "frame 0 is damaged",
    "no decodable frame",
)


def skipped_before(
    runs: list[dict[str, Any]],
    ledger: pd.DataFrame,
    kind: str,
    recorded: dict[str, Any] | None = None,
) -> npt.NDArray[Any]:
    """Per ledger row: a video skipped by a run of an older decoder that no later run checked,
    for a reason this decoder may not give it: `kind` 'video', as truncated (SKIPPED_TRUNCATED,
    `decoder_checked` 'video'); 'video_start', as damaged at its start (SKIPPED_MID_GOP,
    `decoder_checked` 'video_start'). `recorded`: runs.json's `decoder_checked`."""
    import numpy as np

    checked = decoder_checked(runs, kind, recorded)
    if all(checked) or not len(ledger):
        return np.zeros(len(ledger), dtype=bool)
    status = ledger["status"].astype(str)
    reasons = (SKIPPED_TRUNCATED,) if kind == "video" else SKIPPED_MID_GOP
    video = np.array([media_kind(k) == "video" for k in ledger["key"].tolist()], dtype=bool)
    unchecked = ~np.array(checked)[ledger["run"].to_numpy()]
    return np.asarray(video & unchecked & status.str.startswith(reasons).to_numpy(), dtype=bool)


# The skip reason decoder 5 and older gave a TIFF whose compression (Zstandard, LZMA, WebP, JPEG
# 2000), samples (32-bit, float) or colour (CIELab) FFmpeg cannot decode (ingest/decode.py): 6
# reads it with Pillow, or says what it is (runner/upgrade.py `_reread_tiffs`).
SKIPPED_TIFF = "damaged or truncated: its header says "

TIFF_EXTENSIONS = (".tif", ".tiff")


def tiffs_before(
    runs: list[dict[str, Any]], ledger: pd.DataFrame, recorded: dict[str, Any] | None = None
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Per ledger row, of the TIFFs of runs of an older decoder that no later run checked
    (`decoder_checked` 'tiff'): those read whole (a JPEG-compressed one was read as a black
    picture: which, only its bytes tell), and those skipped as damaged (SKIPPED_TIFF)."""
    import numpy as np

    checked = decoder_checked(runs, "tiff", recorded)
    if all(checked) or not len(ledger):
        none = np.zeros(len(ledger), dtype=bool)
        return none, none
    keys = ledger["key"].astype(str).str.lower()
    tiff = (
        keys.str.endswith(TIFF_EXTENSIONS).to_numpy() & ~np.array(checked)[ledger["run"].to_numpy()]
    )
    status = ledger["status"].astype(str)
    ok = tiff & (status == STATUS_OK).to_numpy()
    return ok, tiff & status.str.startswith(SKIPPED_TIFF).to_numpy()


# Containers whose recordings are joined end to end (`cat a.ts b.ts`), the second's timestamps
# starting again from its own zero: decoder 2 and older dropped the frames after such a jump with
# --fps. Other containers' muxers write timestamps that only go forward.
JOINABLE = frozenset({"ts", "mts", "m2ts", "mpg", "mpeg"})

# runs.json's record of a check an older decoder's files had from a run that added nothing (no
# run records it): {"decoder": the checking datapool's DECODER_VERSION, "through_run": the index
# of the last run whose files it checked, "at": when}. A datapool that does not know it ignores
# it and checks those files again: harmless, so it needs no newer reader (pool/format.py).
CHECKED_KEY = "decoder_checked"


def checked_record(data: Any, n_runs: int, where: str) -> dict[str, Any] | None:
    """runs.json's `decoder_checked` (absent: None), checked as Pool.load checks its runs."""
    if data is None:
        return None
    ok = (
        isinstance(data, dict)
        and all(type(data.get(k)) is int for k in ("decoder", "through_run"))
        and 0 <= data["through_run"] < n_runs
    )
    if not ok:
        raise PoolCorruptError(
            f"{where}: '{CHECKED_KEY}' must be an object whose decoder and through_run are "
            f"integers, through_run the index of one of its {n_runs} runs"
        )
    return dict(data)


def fps_jump_candidates(
    runs: list[dict[str, Any]], ledger: pd.DataFrame, recorded: dict[str, Any] | None = None
) -> npt.NDArray[Any]:
    """Per ledger row: a video read whole with --fps, in a container of JOINABLE, by a run of an
    older decoder that no later run checked (`decoder_checked` 'video')."""
    import numpy as np

    checked = decoder_checked(runs, "video", recorded)
    if all(checked) or not len(ledger):
        return np.zeros(len(ledger), dtype=bool)
    by_fps = np.array(
        [not c and bool((r.get("config") or {}).get("fps")) for r, c in zip(runs, checked)]
    )
    keys = ledger["key"].astype(str).tolist()
    joinable = np.array([k.rsplit(".", 1)[-1].lower() in JOINABLE for k in keys], dtype=bool)
    ok = (ledger["status"] == STATUS_OK).to_numpy()
    return np.asarray(joinable & ok & by_fps[ledger["run"].to_numpy()], dtype=bool)


def decoder_checked(
    runs: list[dict[str, Any]], kind: str, recorded: dict[str, Any] | None = None
) -> list[bool]:
    """Whether each run's files of `kind` ('image', 'video') were read as this decoder reads
    them, or checked by a later run that was (runner/upgrade.py `_reread_old_decodes`): a run
    records a `decoder` (fingerprint.DECODER_VERSION) at least the one that last changed how
    files of that kind are read (fingerprint.DECODER_CHANGES), or a later one does that saw its
    files: a run of this pool, or one merged in from the same pool (a merged pool's runs from
    another pool never saw them). `recorded`: runs.json's `decoder_checked` (CHECKED_KEY), a
    check of this pool's files by a run that added nothing, as a later run of this pool's."""
    from datapool.fingerprint import DECODER_CHANGES

    since = DECODER_CHANGES[kind]
    through = -1
    if recorded is not None and int(recorded["decoder"]) >= since:
        through = int(recorded["through_run"])

    def origin(run: dict[str, Any]) -> str | None:
        came = run.get("merged_from")
        return str(came.get("pool")) if isinstance(came, dict) else None

    out, seen = [False] * len(runs), set()  # seen: origins of the later runs that checked
    for i in range(len(runs) - 1, -1, -1):
        here = origin(runs[i])
        read = int(runs[i].get("decoder", 1)) >= since
        out[i] = read or here in seen or "" in seen or i <= through
        if read:
            seen.add("" if here is None else here)
    return out


def next_run(
    runs: list[dict[str, Any]],
    ledger: pd.DataFrame,
    source: str,
    crops: str,
    recorded: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """What a plain run of the pool (no --process-all, --retry-skipped) reads again, one entry per
    reason: `kind`, `files` (None where only the source can tell), `action` ('read again',
    'checked', 'hashed', 'cut again'), `why`. Counts are of the ledger's files: a file gone from
    the source is not read. `source`: where the latest run read ('' if none); `crops`: the pool's
    crop mode ('' for whole images); `recorded`: runs.json's `decoder_checked`."""
    if not runs or not len(ledger):
        return []
    status = ledger["status"].astype(str)
    out: list[dict[str, Any]] = []
    failed = int(status.str.startswith(READ_FAILED).sum())
    if failed:
        out.append(
            {
                "kind": "read_failed",
                "files": failed,
                "action": "read again",
                "why": f"a run could not read {_them(failed)} (the reason is in the ledger); "
                f"every run tries {_them(failed)} again",
            }
        )
    out += _older_decoder(runs, ledger, status, source, recorded)
    out += _older_tiff_decoder(runs, ledger, source, recorded)
    out += _older_video_decoder(runs, ledger, status, source, recorded)
    ok = (status == STATUS_OK).to_numpy()
    bare = ok & (ledger["etag"] == "").to_numpy() & (ledger["content_hash"] == "").to_numpy()
    if bare.any() and scheme_of(source) == "":  # (a bucket's objects are not hashed)
        out.append(
            {
                "kind": "content_hash",
                "files": int(bare.sum()),
                "action": "hashed",
                "why": f"an older datapool recorded {_them(int(bare.sum()))} without a content "
                f"hash: {_each(int(bare.sum()))} read once (not decoded), to tell a touched or "
                "moved file from a changed one",
            }
        )
    if crops:
        out.append(
            {
                "kind": "predictions",
                "files": None,
                "action": "cut again",
                "why": "crop selection cuts again each image whose predictions file changed "
                "since its run (which ones, only the source tells: status does not read it)",
            }
        )
    return out


def _older_decoder(
    runs: list[dict[str, Any]],
    ledger: pd.DataFrame,
    status: pd.Series,
    source: str,
    recorded: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """The images of runs that an older decoder read and no later run checked."""
    import numpy as np

    checked = decoder_checked(runs, "image", recorded)
    if all(checked):
        return []
    unchecked = ~np.array(checked)
    image = np.array([media_kind(k) == "image" for k in ledger["key"].tolist()], dtype=bool)
    mask = image & (status == STATUS_OK).to_numpy() & unchecked[ledger["run"].to_numpy()]
    n = int(mask.sum())
    if not n:
        return []
    runs_say = _unchecked_runs(runs, checked)
    decoded = f"an older datapool decoded {_them(n)} ({runs_say} no decoder)"
    if scheme_of(source) != "":  # objects in a bucket: not downloaded to check
        return [
            {
                "kind": "older_decoder",
                "files": n,
                "action": "not checked",
                "why": f"{decoded}, and objects in S3 are not downloaded to check them: the run "
                "warns; --process-all reads every file again",
            }
        ]
    return [
        {
            "kind": "older_decoder",
            "files": n,
            "action": "checked",
            "why": f"{decoded}; {_read_otherwise(n)}: a mirrored photo (EXIF orientation 2, 4, "
            "5 or 7) read unmirrored, an animated GIF or PNG read as its first frame "
            f"({_which(n, 'the file tells', 'the files tell')})",
        }
    ]


def _older_tiff_decoder(
    runs: list[dict[str, Any]],
    ledger: pd.DataFrame,
    source: str,
    recorded: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """The TIFFs of runs that a decoder before the one that reads them with Pillow read (or
    skipped) and no later run checked."""
    from datapool.fingerprint import DECODER_CHANGES

    read, skipped = tiffs_before(runs, ledger, recorded)
    if not read.any() and not skipped.any():
        return []
    said = _unchecked_runs(runs, decoder_checked(runs, "tiff", recorded))
    older = f"{said} decoder {DECODER_CHANGES['tiff'] - 1} or less"
    out: list[dict[str, Any]] = []
    n = int(skipped.sum())
    if n:
        out.append(
            {
                "kind": "tiff_skipped_before",
                "files": n,
                "action": "read again",
                "why": f"an older datapool skipped {_them(n)} as damaged ({older}), as it did a "
                "TIFF whose compression (Zstandard, LZMA, WebP, JPEG 2000), samples (32-bit, "
                "float) or colour (CIELab) FFmpeg cannot decode, which this one reads with Pillow or skips saying "
                f"what it is; {_tried_once(n, 'damaged')}",
            }
        )
    n = int(read.sum())
    if not n:
        return out
    decoded = f"an older datapool decoded {_them(n)} ({older}), which read a JPEG-compressed TIFF "
    decoded += "as a black picture (white in CMYK)"
    if scheme_of(source) != "":  # objects in a bucket: not downloaded to check
        why = f"{decoded}; objects in S3 are not downloaded to check them: the run warns; "
        why += "--process-all reads every file again"
        return [*out, {"kind": "tiff_before", "files": n, "action": "not checked", "why": why}]
    which = _which(n, "the file's header tells", "their headers tell")
    why = f"{decoded}; {_read_otherwise(n)} ({which})"
    return [*out, {"kind": "tiff_before", "files": n, "action": "checked", "why": why}]


def _unchecked_runs(runs: list[dict[str, Any]], checked: list[bool]) -> str:
    """The runs no later decoder checked, as the subject of "records": "run run-1 records",
    "runs initial-tag, run-1 record" (five named at most)."""
    older = [str(r.get("tag")) for r, c in zip(runs, checked) if not c]
    named = ", ".join(older[:5]) + (f" and {len(older) - 5} more" if len(older) > 5 else "")
    return f"run {named} records" if len(older) == 1 else f"runs {named} record"


def _older_video_decoder(
    runs: list[dict[str, Any]],
    ledger: pd.DataFrame,
    status: pd.Series,
    source: str,
    recorded: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """The videos of runs that an older decoder read (or skipped) and no later run checked."""
    import numpy as np

    from datapool.fingerprint import DECODER_CHANGES

    out: list[dict[str, Any]] = []
    mid_gop = int(skipped_before(runs, ledger, "video_start", recorded).sum())
    if mid_gop:
        said = _unchecked_runs(runs, decoder_checked(runs, "video_start", recorded))
        out.append(
            {
                "kind": "mid_gop_before",
                "files": mid_gop,
                "action": "read again",
                "why": f"an older datapool skipped {_them(mid_gop)} as damaged ({said} decoder "
                f"{DECODER_CHANGES['video_start'] - 1} or less), as it did a video that starts "
                "before a keyframe (a recording cut from a live stream or an IP camera, an HEVC, "
                "MPEG-4 or MPEG-2 MP4 cut mid-GOP without a sync-sample table), which this one "
                f"reads from its first keyframe; {_tried_once(mid_gop, 'damaged')}",
            }
        )
    checked = decoder_checked(runs, "video", recorded)
    if all(checked):
        return out
    runs_say = _unchecked_runs(runs, checked)
    unchecked = ~np.array(checked)[ledger["run"].to_numpy()]
    video = np.array([media_kind(k) == "video" for k in ledger["key"].tolist()], dtype=bool)
    truncated = int(skipped_before(runs, ledger, "video", recorded).sum())
    if truncated:
        out.append(
            {
                "kind": "truncated_before",
                "files": truncated,
                "action": "read again",
                "why": f"an older datapool skipped {_them(truncated)} as truncated ({runs_say} "
                "decoder 2 or less), as it did a clip cut without re-encoding (ffmpeg -ss X -c "
                "copy), a Matroska track that starts late and recordings joined end to end whose "
                f"second is shorter, which this one reads; {_tried_once(truncated, 'cut short')}",
            }
        )
    n = int((video & unchecked & (status == STATUS_OK).to_numpy()).sum())
    if not n:
        return out
    decoded = f"an older datapool decoded {_them(n)} ({runs_say} decoder 2 or less)"
    otherwise = (
        "a video whose display matrix mirrors the picture (a selfie camera's, ffmpeg "
        "-display_hflip) turned as if it did not: upside down, or a quarter turn the wrong way"
    )
    jumps = int(fps_jump_candidates(runs, ledger, recorded).sum())
    if jumps == 1:  # (it said "of the 1 it read")
        otherwise += (
            "; and the one it read with --fps from MPEG-TS or MPEG-PS, if its timestamps jump "
            "back (recordings joined end to end), with the frames after the jump dropped"
        )
    elif jumps:
        otherwise += (
            f"; and, of the {jumps} it read with --fps from MPEG-TS or MPEG-PS, one whose "
            "timestamps jump back (recordings joined end to end) with the frames after the jump "
            "dropped"
        )
    if scheme_of(source) != "":  # objects in a bucket: not downloaded to check
        why = (
            f"{decoded}, which read {otherwise}; objects in S3 are not downloaded to check "
            "them: the run warns; --process-all reads every file again"
        )
        return [
            *out,
            {"kind": "older_video_decoder", "files": n, "action": "not checked", "why": why},
        ]
    tells = _which(
        n,
        "the video's first frame tells" + (", and its packets" if jumps else ""),
        "each video's first frame tells"
        + (", and the packets of those read with --fps" if jumps else ""),
    )
    why = f"{decoded}; {_read_otherwise(n)}: {otherwise} ({tells})"
    return [*out, {"kind": "older_video_decoder", "files": n, "action": "checked", "why": why}]


# The words of a `why` for one file and for more ("a run could not read it", "... them").
def _them(n: int) -> str:
    return "it" if n == 1 else "them"


def _each(n: int) -> str:
    return "it is" if n == 1 else "each is"


def _read_otherwise(n: int) -> str:
    if n == 1:
        return "if that datapool read it otherwise, it is read again, its samples out of the pool"
    return "those it read otherwise are read again, their samples out of the pool"


def _which(n: int, one: str, many: str) -> str:
    return f"whether it did, only {one}" if n == 1 else f"which ones, only {many}"


def _tried_once(n: int, truly: str) -> str:
    if n == 1:
        return f"it is tried once (skipped again if truly {truly})"
    return f"each is tried once (one truly {truly} is skipped again)"
