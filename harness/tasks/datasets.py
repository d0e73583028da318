"""Raw records from bundled files and from TFDS, in one canonical shape.

Every reader returns a list of records (dicts) of one of these families:

* translation: ``{"id", "src", "tgt"}`` (English source, German reference)
* summarization: ``{"id", "document", "summary"}`` (summary None if absent)
* gsm8k: ``{"id", "question", "answer"}`` (worked solution ending "#### N")
* mbpp: ``{"id", "text", "code", "test_list", "test_setup_code",
  "challenge_test_list"}``
* qa: ``{"id", "question", "answers"}`` (+ ``"context"``, ``"title"`` for
  SQuAD; ``answers`` empty for unanswerable SQuAD 2.0 questions)

Offline readers read ``data_root()`` (``$HARNESS_DATA_DIR`` or ``<repo>/data``)
and never touch the network; a malformed line or a missing field raises
``DataError`` naming the file and line. TFDS adapters map TFDS field names to
the same records; TFDS is imported only when used.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import pathlib
from typing import Any, Callable, Iterator

from harness import REPO_ROOT
from harness import extras
from harness.tasks.spec import DataError

DATA_DIR_ENV = "HARNESS_DATA_DIR"
Record = dict[str, Any]

# Official MBPP splits by task_id (google-research/mbpp README).
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600),
               "train": (601, 974)}
_WMT_SHOT_YEARS = (2008, 2009, 2010, 2011, 2012)


def data_root() -> pathlib.Path:
  """The bundled-data directory: $HARNESS_DATA_DIR, else <repo>/data."""
  env = os.environ.get(DATA_DIR_ENV)
  if env:
    return pathlib.Path(env)
  return pathlib.Path(REPO_ROOT) / "data"


def _path(*parts: str) -> pathlib.Path:
  path = data_root().joinpath(*parts)
  if not path.exists():
    raise DataError(f"{path}: missing data file (set ${DATA_DIR_ENV} or "
                    f"restore <repo>/data)")
  return path


def _field(obj: Any, key: str, where: str, kind: type | tuple = str) -> Any:
  """obj[key], checked to be a ``kind``; DataError naming ``where`` if not."""
  if not isinstance(obj, dict) or key not in obj:
    raise DataError(f"{where}: missing field {key!r}")
  value = obj[key]
  if not isinstance(value, kind):
    raise DataError(f"{where}: field {key!r} has type "
                    f"{type(value).__name__}, value {str(value)[:60]!r}")
  return value


def _decode(raw: bytes, where: str) -> str:
  """UTF-8 text of one line; DataError naming ``where`` if it is not."""
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{where}: not UTF-8 text (byte {raw[e.start]:#04x} at "
                    f"column {e.start + 1})") from None


def read_jsonl(path: pathlib.Path) -> Iterator[tuple[str, dict]]:
  """Yields ("<file>:<line>", object) for each non-empty JSON line.

  Raises:
    DataError: naming the file and line of a line that is not UTF-8 or not
      a JSON object, or naming the file when it holds no record at all.
  """
  found = False
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      where = f"{path}:{lineno}"
      line = _decode(raw, where)
      if not line.strip():
        continue
      found = True
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg}): "
                        f"{line.strip()[:60]!r}") from None
      if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {line[:60]!r}")
      yield where, obj
  if not found:
    raise DataError(f"{path}: empty file (no JSON records)")


def _read_lines(path: pathlib.Path) -> list[str]:
  """Lines of a text file (gzip by suffix); DataError if unreadable/empty."""
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (EOFError, OSError) as e:  # gzip.BadGzipFile is an OSError.
    raise DataError(f"{path}: corrupt or truncated file ({e})") from None
  if not raw.strip():
    raise DataError(f"{path}: empty file")
  lines = raw.replace(b"\r\n", b"\n").split(b"\n")
  if not lines[-1]:
    lines.pop()
  return [_decode(line, f"{path}:{i}") for i, line in enumerate(lines, 1)]


def _parallel(src: pathlib.Path, tgt: pathlib.Path, prefix: str) -> list[Record]:
  """Line-aligned source/target files → translation records."""
  src_lines, tgt_lines = _read_lines(src), _read_lines(tgt)
  if len(src_lines) != len(tgt_lines):
    raise DataError(f"{src}: {len(src_lines)} lines but {tgt} has "
                    f"{len(tgt_lines)}")
  for i, (s, t) in enumerate(zip(src_lines, tgt_lines), start=1):
    if not s.strip() or not t.strip():
      raise DataError(f"{src if not s.strip() else tgt}:{i}: empty line")
  return [{"id": f"{prefix}-{i}", "src": s, "tgt": t}
          for i, (s, t) in enumerate(zip(src_lines, tgt_lines))]


def _wmt14(split: str) -> list[Record]:
  if split == "train":  # Few-shot pool only: newstest2008-2012, not WMT14 train.
    return [r for year in _WMT_SHOT_YEARS for r in _parallel(
        _path("wmt_newstest_2008_2012_ende", f"newstest{year}.en"),
        _path("wmt_newstest_2008_2012_ende", f"newstest{year}.de"),
        f"newstest{year}")]
  year = {"validation": 2013, "test": 2014}[split]
  return _parallel(_path("wmt14_en_de", f"newstest{year}.en"),
                   _path("wmt14_en_de", f"newstest{year}.de"), f"newstest{year}")


def _multi30k(split: str) -> list[Record]:
  stem = {"train": "train", "validation": "val", "test": "test_2016_flickr"}[split]
  return _parallel(_path("multi30k", f"{stem}.en.gz"),
                   _path("multi30k", f"{stem}.de.gz"), f"multi30k-{stem}")


def _xsum(split: str) -> list[Record]:
  del split  # Only a 1,000-example sample of the test split is bundled.
  return [{"id": str(_field(o, "id", w, int)),
           "document": _field(o, "document", w),
           "summary": _field(o, "summary", w)}
          for w, o in read_jsonl(_path("xsum", "test_1000.jsonl"))]


def _cnn_dailymail(split: str) -> list[Record]:
  del split  # 500 test articles with their highlights (data/cnn_dailymail).
  return [{"id": f"cnndm-test-{_field(o, 'idx', w, int)}",
           "document": _field(o, "article", w),
           "summary": _field(o, "highlights", w)}
          for w, o in read_jsonl(_path("cnn_dailymail",
                                       "test_pairs_500.jsonl"))]


def _gsm8k(split: str) -> list[Record]:
  path = _path("gsm8k", f"{split}.jsonl")
  records = []
  for i, (where, obj) in enumerate(read_jsonl(path)):
    answer = _field(obj, "answer", where)
    if "####" not in answer:
      raise DataError(f"{where}: field 'answer' has no '#### <number>' line")
    records.append({"id": f"gsm8k-{split}-{i}",
                    "question": _field(obj, "question", where),
                    "answer": answer})
  return records


def _mbpp_record(where: str, obj: dict) -> Record:
  return {"id": str(_field(obj, "task_id", where, int)),
          "text": _field(obj, "text", where),
          "code": _field(obj, "code", where).replace("\r\n", "\n"),
          "test_list": tuple(_field(obj, "test_list", where, list)),
          "test_setup_code": _field(obj, "test_setup_code", where),
          "challenge_test_list": tuple(obj.get("challenge_test_list", ()))}


def _mbpp(split: str) -> list[Record]:
  low, high = MBPP_SPLITS[split]
  records = [_mbpp_record(w, o)
             for w, o in read_jsonl(_path("mbpp", "mbpp.jsonl"))]
  return [r for r in records if low <= int(r["id"]) <= high]


def _json_array(path: pathlib.Path) -> list[Any]:
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def _squad_v2(split: str) -> list[Record]:
  del split  # The bundled file is the CS224N half of the official dev set.
  path = _path("squad_v2", "dev-v2.0.cs224n-dev-half.json")
  records = []
  for a, article in enumerate(_field(_json_array(path), "data", str(path), list)):
    for p, paragraph in enumerate(_field(article, "paragraphs",
                                         f"{path}: data[{a}]", list)):
      where = f"{path}: data[{a}].paragraphs[{p}]"
      context = _field(paragraph, "context", where)
      for q, qa in enumerate(_field(paragraph, "qas", where, list)):
        records.append(_squad_qa(qa, f"{where}.qas[{q}]", context,
                                 article.get("title", "")))
  return records


def _squad_qa(qa: dict, where: str, context: str, title: str) -> Record:
  answers = _field(qa, "answers", where, list)
  texts = tuple(_field(a, "text", f"{where}.answers", str) for a in answers)
  return {"id": _field(qa, "id", where), "question": _field(qa, "question", where),
          "answers": tuple(dict.fromkeys(texts)), "context": context,
          "title": title}


def _webquestions(split: str) -> list[Record]:
  # "train" is val.json: 755 questions carved from the original train split.
  path = _path("webquestions", {"test": "test.json", "train": "val.json"}[split])
  return [{"id": _field(o, "qId", f"{path}: record {i}"),
           "question": _field(o, "qText", f"{path}: record {i}"),
           "answers": tuple(_field(o, "answers", f"{path}: record {i}", list))}
          for i, o in enumerate(_json_array(path))]


def _nq_open(split: str) -> list[Record]:
  # "train" is the EfficientQA test set: disjoint questions, a shot pool only.
  name = {"validation": "NQ-open.dev.jsonl",
          "train": "NQ-open.efficientqa.test.1.1.jsonl"}[split]
  return [{"id": f"nq-{split}-{i}", "question": _field(o, "question", w),
           "answers": tuple(_field(o, "answer", w, list))}
          for i, (w, o) in enumerate(read_jsonl(_path("nq_open", name)))]


def _triviaqa(split: str) -> list[Record]:
  del split  # One 3,000-question subset (Eval Gauntlet); split undocumented.
  records = []
  for i, (where, obj) in enumerate(read_jsonl(
      _path("triviaqa", "triviaqa_sm_sub.jsonl"))):
    context = _field(obj, "context", where)
    if not (context.startswith("Question: ") and context.endswith("\nAnswer:")):
      raise DataError(f"{where}: field 'context' is not 'Question: ...\\n"
                      f"Answer:': {context[:60]!r}")
    aliases = [_field(obj, "answer", where)] + _field(obj, "aliases", where, list)
    records.append({"id": f"triviaqa-{i}",
                    "question": context[len("Question: "):-len("\nAnswer:")],
                    "answers": tuple(dict.fromkeys(aliases))})
  return records


# dataset -> (split -> records). Splits as named in each reader.
OFFLINE_READERS: dict[str, tuple[Callable[[str], list[Record]], tuple[str, ...]]] = {
    "wmt14": (_wmt14, ("train", "validation", "test")),
    "multi30k": (_multi30k, ("train", "validation", "test")),
    "xsum": (_xsum, ("test",)),
    "cnn_dailymail": (_cnn_dailymail, ("test",)),
    "gsm8k": (_gsm8k, ("train", "test")),
    "mbpp": (_mbpp, tuple(MBPP_SPLITS)),
    "squad_v2": (_squad_v2, ("validation",)),
    "webquestions": (_webquestions, ("train", "test")),
    "nq_open": (_nq_open, ("train", "validation")),
    "triviaqa": (_triviaqa, ("validation",)),
}


@functools.lru_cache(maxsize=32)
def _cached_offline(dataset: str, split: str, root: str) -> tuple[Record, ...]:
  del root  # Part of the cache key only.
  reader, _ = OFFLINE_READERS[dataset]
  return tuple(reader(split))


def offline_records(dataset: str, split: str) -> tuple[Record, ...]:
  """Records of a bundled dataset split (cached per data root)."""
  if dataset not in OFFLINE_READERS:
    raise DataError(f"no bundled data for {dataset!r}")
  splits = OFFLINE_READERS[dataset][1]
  if split not in splits:
    raise DataError(f"bundled {dataset} has splits {splits}, not {split!r}")
  return _cached_offline(dataset, split, str(data_root()))


# ----------------------------------------------------------------------------
# TFDS adapters: TFDS example (numpy, bytes decoded) -> canonical record.
# ----------------------------------------------------------------------------


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _texts(values: Any) -> tuple[str, ...]:
  return tuple(dict.fromkeys(_text(v) for v in values))


def _tfds_wmt(ex: dict, i: int) -> Record:
  return {"id": f"wmt14-{i}", "src": _text(ex["en"]), "tgt": _text(ex["de"])}


def _tfds_xsum(ex: dict, i: int) -> Record:
  return {"id": _text(ex["id"]) if "id" in ex else f"xsum-{i}",
          "document": _text(ex["document"]), "summary": _text(ex["summary"])}


def _tfds_cnn(ex: dict, i: int) -> Record:
  return {"id": _text(ex["id"]) if "id" in ex else f"cnndm-{i}",
          "document": _text(ex["article"]), "summary": _text(ex["highlights"])}


def _tfds_gsm8k(ex: dict, i: int) -> Record:
  return {"id": f"gsm8k-{i}", "question": _text(ex["question"]),
          "answer": _text(ex["answer"])}


def _tfds_squad(ex: dict, i: int) -> Record:
  del i
  return {"id": _text(ex["id"]), "question": _text(ex["question"]),
          "answers": _texts(ex["answers"]["text"]),
          "context": _text(ex["context"]), "title": _text(ex["title"])}


def _tfds_webquestions(ex: dict, i: int) -> Record:
  return {"id": f"webq-{i}", "question": _text(ex["question"]),
          "answers": _texts(ex["answers"])}


def _tfds_nq_open(ex: dict, i: int) -> Record:
  return {"id": f"nq-{i}", "question": _text(ex["question"]),
          "answers": _texts(ex["answer"])}


def _tfds_triviaqa(ex: dict, i: int) -> Record:
  del i
  answer = ex["answer"]
  aliases = (_text(answer["value"]),) + _texts(answer["aliases"])
  return {"id": _text(ex["question_id"]), "question": _text(ex["question"]),
          "answers": tuple(dict.fromkeys(aliases))}


TFDS_ADAPTERS: dict[str, Callable[[dict, int], Record]] = {
    "wmt14": _tfds_wmt, "xsum": _tfds_xsum, "cnn_dailymail": _tfds_cnn,
    "gsm8k": _tfds_gsm8k, "squad_v2": _tfds_squad,
    "webquestions": _tfds_webquestions, "nq_open": _tfds_nq_open,
    "triviaqa": _tfds_triviaqa,
}


# The TFDS versions the project pins (``harness.tasks.seqio_tasks.tfds_source``
# serves them to fine-tuning); the sweep's TFDS source reads the newest
# prepared version (``tfds_prepared_size``). The one place for versions.
TFDS_VERSIONS: dict[str, str] = {
    "wmt14_translate/de-en": "1.0.0", "xsum": "1.1.0",
    "cnn_dailymail": "3.4.0", "c4/en": "3.1.0",
}


def tfds_versioned(name: str) -> str:
  """``name:version`` with the version from ``TFDS_VERSIONS`` (a name that
  carries its own version is returned as is)."""
  if ":" in name:
    return name
  if name not in TFDS_VERSIONS:
    raise DataError(f"TFDS {name}: no pinned version (TFDS_VERSIONS: "
                    f"{', '.join(TFDS_VERSIONS)})")
  return f"{name}:{TFDS_VERSIONS[name]}"


def _version_key(name: str) -> tuple[int, ...]:
  return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def tfds_prepared_size(name: str, split: str, data_dir: str) -> int:
  """Examples of a prepared TFDS split, read from ``dataset_info.json``.

  Looks in ``<data_dir>/<name>/<newest version>/`` (the layout `tfds build`
  writes); no TFDS import, nothing else read.

  Raises:
    DataError: the dataset is not prepared there or lacks the split.
  """
  root = pathlib.Path(data_dir, name)
  versions = sorted((p for p in root.glob("*")
                     if (p / "dataset_info.json").exists()),
                    key=lambda p: _version_key(p.name))
  if not versions:
    raise DataError(f"TFDS {name} is not prepared under {data_dir} (no "
                    f"{root}/<version>/dataset_info.json; run `tfds build "
                    f"{name} --data_dir={data_dir}`)")
  info_path = versions[-1] / "dataset_info.json"
  info = _json_array(info_path)
  for entry in info.get("splits", []) if isinstance(info, dict) else []:
    if entry.get("name") == split:
      lengths = entry.get("shardLengths")
      if lengths is not None:
        return sum(int(n) for n in lengths)
      return int(entry.get("statistics", {}).get("numExamples", 0))
  raise DataError(f"{info_path}: no split {split!r}")


def tfds_split_size(name: str, split: str, data_dir: str | None) -> int:
  """Examples in a prepared TFDS split, from its metadata (nothing read)."""
  tfds = extras.require("tensorflow_datasets", "a TFDS source")
  ds = tfds.load(name, split=split, data_dir=data_dir, download=False)
  size = int(ds.cardinality().numpy())
  if size < 0:
    raise DataError(f"TFDS {name}[{split}]: split size unknown")
  return size


def tfds_records(name: str, dataset: str, split: str,
                 data_dir: str | None) -> tuple[Record, ...]:
  """Records of a prepared TFDS split (no download: prepare with `tfds build`).

  Args:
    name: TFDS name, e.g. "squad/v2.0".
    dataset: Adapter key in ``TFDS_ADAPTERS``.
    split: TFDS split, e.g. "validation".
    data_dir: TFDS data directory (None: TFDS's default).

  Returns:
    Canonical records in TFDS order.
  """
  tfds = extras.require("tensorflow_datasets", "a TFDS source")
  ds = tfds.load(name, split=split, data_dir=data_dir, download=False,
                 shuffle_files=False)
  adapter = TFDS_ADAPTERS[dataset]
  records = []
  for i, ex in enumerate(tfds.as_numpy(ds)):
    try:
      records.append(adapter(ex, i))
    except KeyError as e:
      raise DataError(f"TFDS {name}[{split}] example {i}: missing field "
                      f"{e.args[0]!r}") from None
  return tuple(records)
