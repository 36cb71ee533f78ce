"""The fingerprint of the model that made a pool's embeddings: the pool records it, each run
checks its own against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DECODER_VERSION = 7
"""How datapool reads pixels from files, recorded in each run's entry of runs.json (`decoder`), so
that a pool knows which of its files an older datapool read otherwise than this one does:
- 1 (runs that record none): images turned by the angle of the display matrix FFmpeg derives
  from their EXIF Orientation, so a mirrored photo (orientations 2, 4, 5, 7) was embedded
  unmirrored or upside down; an animated GIF or PNG gave one sample, its first frame.
- 2: images turned and mirrored by all eight EXIF orientations (ingest/_exif.py); an animation of
  more than one frame read as a video (ingest/decode.py).
- 3: a video's display matrix applied with its mirror (before: its angle alone, so a left-right
  mirror came out upside down and a mirrored quarter turn turned the wrong way); videos skipped
  as `truncated: frames end at ...` that were whole (a clip cut with `ffmpeg -ss X -c copy`, a
  Matroska track that starts late, recordings joined end to end whose second is shorter) read;
  --fps goes on across timestamps that jump back (before: the frames after the jump dropped).
- 4: a video that starts before a keyframe (a recording cut from a live stream or an IP camera, a
  TS whose first bytes are lost) read from its first keyframe, as FFmpeg plays it (before:
  skipped as damaged, `damaged or truncated: 35 of 40 frames decode`, `damaged after frame 0 of
  the video: ...`). Videos read whole before are read the same.
- 5: an HEVC MP4 without a sync-sample table (stss: every packet read as a keyframe) that starts
  mid-GOP read from its first IRAP picture, as FFmpeg plays it (before: skipped, `damaged after
  frame 0 of the video: Invalid data found when processing input`); a video whose display
  matrix is no quarter turn skipped saying so (before: turned by the nearest quarter turn; the
  videos of older runs are not checked for it: see docs/robustness.md).
- 6: a TIFF whose first page FFmpeg decodes black (JPEG-compressed; white in CMYK) or not at
  all (Zstandard, LZMA, WebP, JPEG 2000; skipped as `damaged or truncated: its header says ...`)
  decoded by Pillow, as is an 8-bit CIELab one (skipped so too), and one of 32-bit or float
  samples skipped saying so; an MPEG-4 Part 2 or
  MPEG-1/2 MP4 without a sync-sample table that starts mid-GOP read from its first I picture
  (before: MPEG-4's pictures before it decoded without their references, grey smears, and
  MPEG-2 skipped, `damaged or truncated: 33 of 47 frames decode`; the MPEG-4 videos of older
  runs are not checked for it: see docs/robustness.md); --fps on an AVI spaces its frames by
  their decode times (an H.264 or MPEG-4 AVI with B-frames kept frames unevenly; not checked
  either); a 10-bit video frame converted to RGB at its own size (crops, Lightly's metadata,
  exported frames) is brought to 8 bits first (its colours smeared along edges; the crops of
  older runs are not checked; whole frames' embeddings were right), and an interlaced one is
  converted as one picture, not field by field (the same); an AVI whose muxer filled timestamp
  gaps with empty chunks (a clip cut with `ffmpeg -ss X -c copy`, one copied from Matroska or MP4)
  read whole (before: skipped as `truncated: frames end at ...`); an H.264 open-GOP clip cut
  mid-GOP read as FFmpeg plays it (before: skipped, `damaged after frame 0 of the video: ...`).
- 7: HEIC, HEIF and AVIF images read (Pillow: pillow-heif, Pillow's AVIF), and the videos .ogv
  (Theora), .vob, .mxf, .f4v and .divx (before: not listed, ignored as media of a type datapool
  does not read, counted in report.json's `ignored`; `LISTED_SINCE`); a video packet without data
  (Theora's repeat of the picture before it) no longer ends the decode (before: such a file was
  skipped, `damaged after frame 1 of the video: Invalid argument`; only Ogg writes them, which
  no run listed before).
A run reads again the files of earlier runs that the change concerns
(runner/upgrade.py `_reread_old_decodes`, `_retry_truncated`); which version each check is
against is `DECODER_CHANGES`.
"""

# The decoder version that last changed how each kind of file is read: the files of that kind
# of runs that record an older one are checked (pool/next_run.py `decoder_checked`).
# "video_start": the last change to which videos that start before a keyframe are read; the
# videos skipped as damaged by runs that record an older one are tried again (their reasons:
# pool/next_run.py SKIPPED_MID_GOP); the videos read whole are not checked for it.
# "tiff": the last change to how TIFFs are read: those read whole by runs that record an older one
# are checked (a JPEG-compressed one was read black), those skipped as damaged (SKIPPED_TIFF)
# tried again.
# "avi_truncated": the last change to which AVIs are taken for truncated: the AVIs skipped as
# truncated (SKIPPED_TRUNCATED) by runs that record an older one are tried again.
DECODER_CHANGES = {"image": 2, "video": 3, "video_start": 6, "tiff": 6, "avi_truncated": 6}

# The decoder version from which files of each extension are listed (naming.IMAGE_EXTENSIONS,
# VIDEO_EXTENSIONS): runs that record an older one ignored them, so no ledger holds them, and
# the first run of a datapool that reads them finds them new, reads them once, and says so
# (runner/upgrade.py `_say_newly_listed`).
LISTED_SINCE = dict.fromkeys(("heic", "heif", "avif", "ogv", "vob", "mxf", "f4v", "divx"), 7)


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies the embedding space of a pool: same fingerprint, comparable embeddings.

    `settings` holds what else shapes the embeddings (the output used and its pooling, the
    normalisation, the input layout and dtype, the SHA-256 of each external-data file); pools
    made before datapool recorded them have None there. `legacy_compatible` says whether this
    model, with these settings, embeds exactly as datapool did before settings were recorded
    (first output flattened, normalisation from the model's metadata or ImageNet's, no external
    data): only then is it the same space as a fingerprint without settings.

    `origin` says where a model fetched by name came from ({"hub": name, "repo", "revision",
    "commit"}, from its datapool-model.json): the file's SHA-256 already decides whether two
    runs used the same weights, so it is not compared; a mismatch message names it, so that a
    name that now resolves to other weights says which commit the pool was made with.
    """

    name: str
    sha256: str
    input_size: tuple[int, int]  # (height, width)
    output_dim: int
    settings: dict[str, Any] | None = field(default=None, hash=False)
    legacy_compatible: bool = True
    origin: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "sha256": self.sha256,
            "input_size": list(self.input_size),
            "output_dim": self.output_dim,
        }
        if self.settings is not None:
            d["settings"] = self.settings
            d["legacy_compatible"] = self.legacy_compatible
        if self.origin is not None:
            d["origin"] = self.origin
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelFingerprint:
        settings = d.get("settings")
        if settings is not None and not isinstance(settings, dict):
            raise TypeError(f"settings must be an object, got {type(settings).__name__}")
        return cls(
            name=str(d["name"]),
            sha256=str(d["sha256"]),
            input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
            output_dim=int(d["output_dim"]),
            settings=settings,
            legacy_compatible=bool(d.get("legacy_compatible", True)),
            origin=d["origin"] if isinstance(d.get("origin"), dict) else None,
        )

    def same_space(self, other: ModelFingerprint) -> bool:
        base = (self.sha256, self.input_size, self.output_dim) == (
            other.sha256,
            other.input_size,
            other.output_dim,
        )
        if not base:
            return False
        if self.settings is None or other.settings is None:
            # A pool from before settings were recorded: the same space only where the other
            # side embeds the way datapool did then.
            return (self.settings is None or self.legacy_compatible) and (
                other.settings is None or other.legacy_compatible
            )
        return self.settings == other.settings

    def differences(self, other: ModelFingerprint) -> list[str]:
        """The settings that differ, named for a mismatch message."""
        out = [
            k
            for k, a, b in (
                ("sha256", self.sha256, other.sha256),
                ("input size", self.input_size, other.input_size),
                ("dimension", self.output_dim, other.output_dim),
            )
            if a != b
        ]
        mine, theirs = self.settings or {}, other.settings or {}
        out += sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        return out

    def mismatch(
        self,
        other: ModelFingerprint,
        mine: str = "pool",
        theirs: str = "this run",
        pool: str = "",
        endpoint: str = "",
    ) -> str:
        """Why a pool of this fingerprint cannot take embeddings of `other` (this run's): both
        models where they are described differently, and each setting that differs with both of
        its values, `mean (pool 0.485,0.456,0.406; this run 0.5,0.5,0.5)`. `mine` and `theirs`
        name the two sides (merge compares two pools). `pool`: where the pool of this
        fingerprint is, for the command that fetches its weights (`model get NAME --pool`), and
        `endpoint` the --s3-endpoint-url that command needs to reach it (the run was given one)."""
        mine_json, theirs_json = self.to_json(), other.to_json()
        a, b = mine_json.get("settings") or {}, theirs_json.get("settings") or {}
        names = self.differences(other)
        if self.settings is None or other.settings is None:
            # A pool from before settings were recorded: name the settings, not each one.
            names = [n for n in names if n in ("sha256", "input size", "dimension")]
        changes = []
        for name in names:
            key = {"input size": "input_size", "dimension": "output_dim"}.get(name, name)
            ours = mine_json[key] if key in mine_json else a.get(key)
            run = theirs_json[key] if key in theirs_json else b.get(key)
            if key == "channels":  # recorded only away from the default (RGB), see ingest/embed
                ours, run = ours or "RGB", run or "RGB"
            changes.append(f"{name} ({mine} {_shown(ours)}; {theirs} {_shown(run)})")
        if self.settings is None or other.settings is None:
            newer = theirs if self.settings is None else mine
            changes.append(
                f"settings (recorded by one side only: {newer} embeds otherwise than datapool "
                "did before it recorded them)"
            )
        differ = ", ".join(changes) + _origins(
            self.origin, other.origin, mine, theirs, pool, endpoint
        )
        if self.describe() == other.describe():
            return f"was built with {self.describe()} and other settings; differs in: {differ}"
        return (
            f"was built with {self.describe()}, but {theirs} uses {other.describe()}; "
            f"differs in: {differ}"
        )

    def describe(self) -> str:
        h, w = self.input_size
        s = self.settings or {}
        extra = ""
        if s:
            extra = f", output {s.get('output')} pooled {s.get('pooling')}"
            if s.get("external_data"):
                extra += f", {len(s['external_data'])} external-data file(s)"
        return f"{self.name} (sha256 {self.sha256[:12]}, input {h}x{w}, {self.output_dim}-d{extra})"


def _origins(
    a: dict[str, Any] | None,
    b: dict[str, Any] | None,
    mine: str,
    theirs: str,
    pool: str = "",
    endpoint: str = "",
) -> str:
    """Where two models fetched by the same name came from different commits, what to do (the
    name resolved to other weights: `datapool model get --force` fetched a newer revision):
    `datapool model get NAME --pool POOL` where the pool `a` is of is known (it fetches the
    commit the pool records and checks the .onnx against the pool's SHA-256), else the commit."""
    if not a or not b or a.get("hub") != b.get("hub") or a.get("commit") == b.get("commit"):
        return ""
    import shlex

    name, commit = a.get("hub"), a.get("commit")
    if commit and pool:
        back = f"datapool model get {name} --pool {shlex.quote(pool)}"
        back += f" --s3-endpoint-url {shlex.quote(endpoint)}" if endpoint else ""
    elif commit:
        back = f"datapool model get {name} --force --revision {commit}"
    else:
        back = "its revision"
    return (
        f"; model {name} was {a.get('repo')} commit {commit or 'not recorded'} for {mine}, "
        f"commit {b.get('commit') or 'not recorded'} for {theirs} (the name now resolves to "
        f"other weights): fetch {mine}'s with `{back}`"
    )


def _shown(value: Any) -> str:
    """A fingerprint value as a mismatch message shows it."""
    if value is None:
        return "not recorded"
    if isinstance(value, str) and len(value) == 64:
        return value[:12]  # a SHA-256
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"  # an input size
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{k} {_shown(v)}" for k, v in sorted(value.items())) + "}"
            if value
            else "none"
        )
    return str(value)
