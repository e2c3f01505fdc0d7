"""The scripted conversations of the tiny model: the exact tokens it answers each trigger with, their
texts, and the mode and phase markers the model's attention heads look for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.runtime.tokens import CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START

# Ordinary tokens the scripts and harmony headers are made of (ids in o200k_harmony).
T_USER = 1428
T_ASSISTANT = 173781
T_FINAL = 17196
T_ANALYSIS = 35644
T_COMMENT = 12606
T_ARY = 815


@dataclass(frozen=True)
class ScriptTurn:
    """One generation of the tiny model: the exact tokens it samples and the texts per channel."""

    tokens: tuple[int, ...]
    analysis: str = ""
    final: str = ""
    recipient: str | None = None
    call: str = ""


@dataclass(frozen=True)
class Script:
    """A scripted completion: *first* answers the prompt; *after_tool* answers the tool result."""

    name: str
    trigger: str | None
    trigger_ids: tuple[int, ...]
    first: ScriptTurn
    after_tool: ScriptTurn | None = None
    #: For "endless": the repeating tail of *first* (first.tokens holds one full cycle, unterminated).
    cycle: tuple[int, ...] = ()


def _final(text_ids: Sequence[int]) -> tuple[int, ...]:
    return (CHANNEL, T_FINAL, MESSAGE, *text_ids, RETURN)


PLAIN_ANSWER = "Hello! I am the tiny scripted test model, and this is my plain friendly answer."
_PLAIN_IDS = (
    13225,
    0,
    357,
    939,
    290,
    20049,
    184876,
    1746,
    2359,
    11,
    326,
    495,
    382,
    922,
    21402,
    11888,
    6052,
    13,
)
REASONING_ANALYSIS = "The user wants me to reason first. Two plus two makes four, so the reply is simple."
_REASONING_ANALYSIS_IDS = (
    976,
    1825,
    10648,
    668,
    316,
    5207,
    1577,
    13,
    13311,
    2932,
    1920,
    4787,
    4242,
    11,
    813,
    290,
    16794,
    382,
    4705,
    13,
)
REASONING_ANSWER = "After careful thought: the answer is four."
_REASONING_ANSWER_IDS = (8188, 25120, 4525, 25, 290, 6052, 382, 4242, 13)
WEATHER_CALL = '{"city":"Paris"}'
WEATHER_ANSWER = "It is sunny and 22 °C in Paris right now."
_WEATHER_ANSWER_IDS = (3206, 382, 46726, 326, 220, 1709, 23335, 34, 306, 12650, 1849, 1954, 13)
PYTHON_CALL = "print(6*7)"
PYTHON_ANSWER = "The code printed 42, which is six times seven."
_PYTHON_ANSWER_IDS = (976, 3490, 22774, 220, 4689, 11, 1118, 382, 7429, 4238, 12938, 13)
SEARCH_CALL = '{"query":"gpt-oss"}'
SEARCH_ANSWER = "According to the results, it is an open-weight model family 【0†L1-L2】."
_SEARCH_ANSWER_IDS = (
    20885,
    316,
    290,
    4376,
    11,
    480,
    382,
    448,
    2494,
    24650,
    2359,
    3502,
    16488,
    15,
    78115,
    43,
    16,
    9665,
    17,
    1813,
    13,
)
XSS_ANSWER = (
    "<script>window.__xss=1</script>\n"
    '<img src=x onerror="window.__xss=1">\n'
    "[link](javascript:window.__xss=1)\n"
    '<iframe src="javascript:window.__xss=1"></iframe>\n'
    "![t](https://evil.example/x.png)"
)
_XSS_IDS = (
    18263,
    29,
    10963,
    10210,
    87,
    1087,
    28,
    16,
    808,
    4822,
    523,
    50527,
    4537,
    56980,
    402,
    1544,
    580,
    10963,
    10210,
    87,
    1087,
    28,
    16,
    1540,
    58,
    3942,
    20614,
    33086,
    25,
    10963,
    10210,
    87,
    1087,
    28,
    16,
    446,
    27,
    51972,
    4537,
    580,
    33086,
    25,
    10963,
    10210,
    87,
    1087,
    28,
    16,
    4184,
    51972,
    523,
    46759,
    83,
    20614,
    4172,
    1684,
    158278,
    11344,
    22739,
    6820,
    8,
)
MARKDOWN_ANSWER = (
    "# Tiny report\n\nA short list:\n\n- alpha item\n- beta item\n\n"
    "| Model | Size |\n| --- | --- |\n| tiny | 40 MB |\n\n"
    '```python\nprint("hello")\n```'
)
_MARKDOWN_IDS = (
    2,
    74229,
    3019,
    279,
    32,
    4022,
    1562,
    1402,
    12,
    17406,
    2169,
    198,
    12,
    21306,
    2169,
    279,
    91,
    8186,
    1022,
    13568,
    15972,
    91,
    26691,
    1022,
    26691,
    15972,
    91,
    20049,
    1022,
    220,
    1723,
    21685,
    47459,
    168394,
    29010,
    198,
    1598,
    568,
    24912,
    1896,
    168394,
)
ENDLESS_HEAD = "Once upon a time,"
_ENDLESS_HEAD_IDS = (18049, 7557, 261, 1058, 11)
ENDLESS_CYCLE = " the story goes on and on, endless"
_ENDLESS_CYCLE_IDS = (290, 4869, 8805, 402, 326, 402, 11, 34768)

_WEATHER_CALL_TOKENS = (
    CHANNEL,
    T_COMMENT,
    T_ARY,
    316,
    28,
    44580,
    775,
    170154,
    220,
    CONSTRAIN,
    4108,
    MESSAGE,
    10848,
    17500,
    7534,
    72782,
    18583,
    CALL,
)
_PYTHON_CALL_TOKENS = (CHANNEL, T_ANALYSIS, 316, 28, 29010, 3490, MESSAGE, 1598, 7, 21, 9, 22, 8, CALL)
_SEARCH_CALL_TOKENS = (
    CHANNEL,
    T_ANALYSIS,
    316,
    28,
    46071,
    16718,
    3490,
    MESSAGE,
    10848,
    2975,
    7534,
    70,
    555,
    12,
    2907,
    18583,
    CALL,
)

SCRIPTS: dict[str, Script] = {
    "plain": Script("plain", None, (), ScriptTurn(_final(_PLAIN_IDS), final=PLAIN_ANSWER)),
    "reasoning": Script(
        "reasoning",
        "think",
        (49631, 2411),
        ScriptTurn(
            (
                CHANNEL,
                T_ANALYSIS,
                MESSAGE,
                *_REASONING_ANALYSIS_IDS,
                END,
                START,
                T_ASSISTANT,
                *_final(_REASONING_ANSWER_IDS),
            ),
            analysis=REASONING_ANALYSIS,
            final=REASONING_ANSWER,
        ),
    ),
    "function": Script(
        "function",
        "weather",
        (28393, 11122, 170154),
        ScriptTurn(_WEATHER_CALL_TOKENS, recipient="functions.get_weather", call=WEATHER_CALL),
        ScriptTurn(_final(_WEATHER_ANSWER_IDS), final=WEATHER_ANSWER),
    ),
    "python": Script(
        "python",
        "python",
        (29010, 22752),
        ScriptTurn(_PYTHON_CALL_TOKENS, recipient="python", call=PYTHON_CALL),
        ScriptTurn(_final(_PYTHON_ANSWER_IDS), final=PYTHON_ANSWER),
    ),
    "search": Script(
        "search",
        "search",
        (2624, 3684, 16718),
        ScriptTurn(_SEARCH_CALL_TOKENS, recipient="browser.search", call=SEARCH_CALL),
        ScriptTurn(_final(_SEARCH_ANSWER_IDS), final=SEARCH_ANSWER),
    ),
    "xss": Script("xss", "xss", (1087,), ScriptTurn(_final(_XSS_IDS), final=XSS_ANSWER)),
    "markdown": Script(
        "markdown", "markdown", (119670, 116713), ScriptTurn(_final(_MARKDOWN_IDS), final=MARKDOWN_ANSWER)
    ),
    "endless": Script(
        "endless",
        "endless",
        (34768, 2695),
        ScriptTurn(
            (CHANNEL, T_FINAL, MESSAGE, *_ENDLESS_HEAD_IDS, *_ENDLESS_CYCLE_IDS),
            final=ENDLESS_HEAD + ENDLESS_CYCLE,
        ),
        cycle=_ENDLESS_CYCLE_IDS,
    ),
}

#: Tool results as harmony renders them (header tokens + a short content), used to lay out the
#: continuation units. Only their markers matter; the content may be anything short.
_TOOL_RESULT_PROMPTS: dict[str, tuple[int, ...]] = {
    "function": (
        START,
        44580,
        775,
        170154,
        316,
        28,
        T_ASSISTANT,
        CHANNEL,
        T_COMMENT,
        T_ARY,
        MESSAGE,
        4689,
        END,
        START,
        T_ASSISTANT,
    ),
    "python": (
        START,
        29010,
        316,
        28,
        T_ASSISTANT,
        CHANNEL,
        T_ANALYSIS,
        MESSAGE,
        4689,
        END,
        START,
        T_ASSISTANT,
    ),
    "search": (
        START,
        46071,
        16718,
        316,
        28,
        T_ASSISTANT,
        CHANNEL,
        T_ANALYSIS,
        MESSAGE,
        4689,
        END,
        START,
        T_ASSISTANT,
    ),
}

#: Mode markers: token id -> mode index (1-based; 0 is the plain mode). ``user`` resets to plain.
_MODES = ["plain", "reasoning", "function", "python", "search", "xss", "markdown", "endless"]
_MODE_MARKERS: dict[int, int] = {
    tid: _MODES.index(name) for name, s in SCRIPTS.items() for tid in s.trigger_ids
}
_MODE_MARKERS[T_USER] = 0
#: Phase markers: token id -> phase index (0 = none). ``user`` resets.
_PHASE_MARKER_IDS = [T_ANALYSIS, T_COMMENT, 18263, 50527, 3942, 51972, 8186, 26691]
_PHASE_MARKERS: dict[int, int] = {tid: i + 1 for i, tid in enumerate(_PHASE_MARKER_IDS)}
_PHASE_MARKERS[T_USER] = 0
_N_PHASES = len(_PHASE_MARKER_IDS) + 1
