"""Prompt templates, few-shot assembly and prediction post-processing.

Prompts (``TASK_VERSION`` 1):

* T5 fine-tuned tasks use the T5 task prefixes: "translate English to German: "
  and "summarize: " (the prefixes the T5 checkpoints were trained with).
* Multi30k (tiny CPU models trained here) uses the raw English sentence.
* Gemma few-shot tasks use plain "field: value" templates, exemplars separated
  by a blank line, ending with the open field the model completes:
  - WMT: "English: <src>\\nGerman: <tgt>" (5 shots).
  - CNN/DM: "Article: <article>\\n\\nSummarize the article above in three
    sentences.\\nSummary:" (0 shots: the paper does not state the shots, and a
    2,048-token input leaves no room for an exemplar article).
  - GSM8K: "Question: <q>\\nAnswer: <worked solution> The answer is <n>." with
    the solution's "<<calc>>" annotations removed (8 shots).
  - MBPP: the MBPP paper's prompt "You are an expert Python programmer, and
    here is your task: <text> Your code should pass these tests:\\n\\n<asserts>
    \\n[BEGIN]\\n<code>\\n[DONE]" (3 shots from the official prompt split,
    task ids 1-10).
  - Closed-book QA (WebQuestions, NQ-open, TriviaQA): "Q: <q>\\nA: <answer>"
    (1 shot; TriviaQA's shots are not stated by the paper, 1 matches NQ/WebQ).
  - SQuAD 2.0: "Title/Background/Question" with an instruction to answer
    "unanswerable" when the passage has no answer (0 shots: not stated by the
    paper; contexts are long).

Exemplars are the same for every example of a task and seed: chosen by
``select_shots`` from the task's shot split, never an evaluated example.
"""

from __future__ import annotations

import re
from typing import Sequence

from harness.tasks.datasets import Record
from harness.tasks.spec import PromptFormat

T5_TRANSLATE_PREFIX = "translate English to German: "
T5_SUMMARIZE_PREFIX = "summarize: "
SHOT_SEPARATOR = "\n\n"
NO_ANSWER = "unanswerable"  # SQuAD 2.0 reply mapped to "" before scoring.
MBPP_DONE = "[DONE]"
_GSM8K_CALC = re.compile(r"<<[^>]*>>")
_GSM8K_FINAL = re.compile(r"\n?####\s*(.+)\s*$")
_CNN_INSTRUCTION = "Summarize the article above in three sentences."
_SQUAD_INSTRUCTION = (f"Answer with a short span from the background, or "
                      f"\"{NO_ANSWER}\" if the background does not answer it.")


def gsm8k_final(answer: str) -> str:
  """The final answer after "####" of a GSM8K solution, commas removed."""
  match = _GSM8K_FINAL.search(answer)
  return match.group(1).strip().replace(",", "") if match else ""


def _gsm8k_solution(answer: str) -> str:
  steps = _GSM8K_FINAL.sub("", _GSM8K_CALC.sub("", answer)).strip()
  if not steps.endswith((".", "!", "?")):
    steps += "."
  return f"{steps} The answer is {gsm8k_final(answer)}."


def _mbpp_problem(record: Record) -> str:
  tests = "\n".join(record["test_list"])
  return (f"You are an expert Python programmer, and here is your task: "
          f"{record['text']} Your code should pass these tests:\n\n{tests}\n")


def _squad_question(record: Record) -> str:
  return (f"Title: {record['title']}\nBackground: {record['context']}\n"
          f"Question: {record['question']}\n{_SQUAD_INSTRUCTION}\nAnswer:")


def _query(fmt: PromptFormat, record: Record) -> str:
  """The part of the prompt for the evaluated record (no answer)."""
  if fmt is PromptFormat.T5_TRANSLATE:
    return T5_TRANSLATE_PREFIX + record["src"]
  if fmt is PromptFormat.T5_SUMMARIZE:
    return T5_SUMMARIZE_PREFIX + record["document"]
  if fmt is PromptFormat.RAW_TRANSLATE:
    return record["src"]
  if fmt is PromptFormat.FEWSHOT_TRANSLATE:
    return f"English: {record['src']}\nGerman:"
  if fmt is PromptFormat.INSTRUCT_SUMMARIZE:
    return f"Article: {record['document']}\n\n{_CNN_INSTRUCTION}\nSummary:"
  if fmt is PromptFormat.GSM8K_COT:
    return f"Question: {record['question']}\nAnswer:"
  if fmt is PromptFormat.MBPP:
    return _mbpp_problem(record) + "[BEGIN]\n"
  if fmt is PromptFormat.CLOSED_BOOK_QA:
    return f"Q: {record['question']}\nA:"
  if fmt is PromptFormat.READING_QA:
    return _squad_question(record)
  raise ValueError(f"unknown prompt format {fmt}")


def _answer(fmt: PromptFormat, record: Record) -> str:
  """The exemplar's answer text, appended after its query."""
  if fmt is PromptFormat.FEWSHOT_TRANSLATE:
    return " " + record["tgt"]
  if fmt is PromptFormat.GSM8K_COT:
    return " " + _gsm8k_solution(record["answer"])
  if fmt is PromptFormat.MBPP:
    return f"{record['code']}\n{MBPP_DONE}"
  if fmt in (PromptFormat.CLOSED_BOOK_QA, PromptFormat.READING_QA):
    return " " + (record["answers"][0] if record["answers"] else NO_ANSWER)
  raise ValueError(f"prompt format {fmt} has no few-shot template")


def build_inputs(fmt: PromptFormat, record: Record,
                 shots: Sequence[Record]) -> str:
  """Full model input: exemplars (query + answer each), then the query."""
  parts = [_query(fmt, s) + _answer(fmt, s) for s in shots]
  return SHOT_SEPARATOR.join(parts + [_query(fmt, record)])


def targets_and_extra(fmt: PromptFormat, record: Record
                      ) -> tuple[tuple[str, ...], dict]:
  """References (all aliases) and metric extras for one record."""
  if fmt in (PromptFormat.T5_TRANSLATE, PromptFormat.RAW_TRANSLATE,
             PromptFormat.FEWSHOT_TRANSLATE):
    return (record["tgt"],), {}
  if fmt in (PromptFormat.T5_SUMMARIZE, PromptFormat.INSTRUCT_SUMMARIZE):
    summary = record["summary"]
    return ((summary,) if summary else ()), {"has_reference": bool(summary)}
  if fmt is PromptFormat.GSM8K_COT:
    return (gsm8k_final(record["answer"]),), {"solution": record["answer"]}
  if fmt is PromptFormat.MBPP:
    return (record["code"],), {
        "test_list": record["test_list"],
        "test_setup_code": record["test_setup_code"],
        "challenge_test_list": record["challenge_test_list"]}
  if fmt is PromptFormat.READING_QA:
    return record["answers"], {"is_impossible": not record["answers"]}
  return record["answers"], {}


# Where a few-shot answer ends (lm-eval's ``until``): the decoded output is
# cut at the first occurrence of any of these, before anything else. The
# decoding loops stop as soon as the generated tokens spell one of them
# (``stop_strings``; the runner turns them into token sequences), so a decode
# never runs past the answer, and the cut text is the same as a full decode's.
STOP_STRINGS: dict[PromptFormat, tuple[str, ...]] = {
    PromptFormat.FEWSHOT_TRANSLATE: ("\n",),
    PromptFormat.CLOSED_BOOK_QA: ("\n",),
    PromptFormat.READING_QA: ("\n",),
    PromptFormat.GSM8K_COT: ("\nQuestion:",),
    PromptFormat.MBPP: (MBPP_DONE,),
}


def stop_strings(fmt: PromptFormat) -> tuple[str, ...]:
  """The strings that end an answer of this format (may be empty)."""
  return STOP_STRINGS.get(fmt, ())


def cut_at_stop(fmt: PromptFormat, text: str) -> str:
  """``text`` up to (excluding) the first occurrence of a stop string."""
  for stop in stop_strings(fmt):
    text = text.split(stop)[0]
  return text


def postprocess(fmt: PromptFormat, prediction: str) -> str:
  """Model output text → the string the task's metrics score.

  Args:
    fmt: The task's prompt format.
    prediction: Decoded model output (prompt excluded).

  Returns:
    The output cut at its first stop string (``STOP_STRINGS``), then:
    translation and QA: the first line, stripped; SQuAD 2.0 maps the
    "unanswerable" reply to "" (the official no-answer prediction); GSM8K:
    the text before the model starts a new "Question:"; MBPP: the code
    before "[DONE]"; summaries: stripped.
  """
  text = cut_at_stop(fmt, prediction).strip()
  if fmt is PromptFormat.MBPP:
    return text.strip("\n")
  if fmt is PromptFormat.GSM8K_COT:
    return text
  if fmt in (PromptFormat.T5_SUMMARIZE, PromptFormat.INSTRUCT_SUMMARIZE):
    return text
  first = text.split("\n")[0].strip()
  if fmt is PromptFormat.READING_QA and first.lower().strip(" .") == NO_ANSWER:
    return ""
  return first
