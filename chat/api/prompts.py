"""A request's conversation, folded into the harmony prompt of its next reply (`ApiPrompt`).

Both endpoints feed it the conversation oldest first: Chat Completions its messages, the Responses API its
input items (after the stored chain of `previous_response_id`, if any). The roles map onto harmony as
gpt-oss's guide says: `system` and `developer` messages become the developer instructions; earlier user
messages and the final answers they got, the finished turns (their reasoning dropped, as harmony wants after
a final answer); the calls to the client's functions after the last user message, with the results that
answer them, the turn in progress (the reasoning before each call kept).
"""

from __future__ import annotations

from chat.api.errors import invalid
from chat.models import ApiFunction, ApiPrompt, ApiToolStep, ApiTurn
from inference.tools.records import ToolCallRecord


class PromptBuilder:
    """Folds a conversation, oldest first, into the prompt of its next reply; *root* names the parameter
    (`messages`, `input`) that errors point at."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.carried: list[str] = []
        self.turns: list[ApiTurn] = []
        self.user: str | None = None
        self.final = ""
        self.steps: list[ApiToolStep] = []
        self.unanswered: dict[str, int] = {}  # call id -> its step, waiting for the client's result
        self.reasoning = ""  # reasoning that leads to the next call (dropped if an answer comes instead)

    @classmethod
    def continuing(
        cls,
        root: str,
        prompt: ApiPrompt,
        *,
        reasoning: str,
        answer: str,
        calls: list[tuple[str, ApiToolStep]],
    ) -> PromptBuilder:
        """Return a builder that carries on from a stored request's *prompt* and what its reply wrote: its
        *reasoning*, then its *answer* or its *calls* to the client's functions (call id, step)."""
        builder = cls(root)
        if prompt.get("carried"):
            builder.carried.append(prompt["carried"])
        builder.turns = list(prompt["history"])
        builder.user = prompt["user"]
        builder.steps = list(prompt["steps"])
        builder.reason(reasoning)
        if answer and not calls:
            builder.answer(answer)
        for call_id, step in calls:
            builder.call(
                call_id, step["name"], step["arguments"], namespace=step.get("namespace", "functions")
            )
        return builder

    def instruct(self, text: str) -> None:
        if text:
            self.carried.append(text)

    def ask(self, text: str, param: str) -> None:
        """The user says *text*: it ends the turn before (a user message right after another joins it)."""
        if self.unanswered:
            raise invalid(param, "A function call has no output with its result before this message.")
        if self.user is not None and not self.final and not self.steps:
            self.user = f"{self.user}\n\n{text}"
            return
        if self.user is not None:
            self.turns.append(ApiTurn(user=self.user, final=self.final))
        self.user, self.final, self.steps, self.reasoning = text, "", [], ""

    def answer(self, text: str) -> None:
        """The assistant answered *text* (its reasoning before the answer is dropped, as harmony wants)."""
        self.final = text if not self.final else f"{self.final}\n\n{text}"
        self.reasoning = ""

    def reason(self, text: str) -> None:
        self.reasoning += text

    def call(self, call_id: str, name: str, arguments: str, *, namespace: str = "functions") -> None:
        """The assistant called the client's function *name* (the reasoning before it goes with it)."""
        self.unanswered[call_id] = len(self.steps)
        step = ApiToolStep(
            call_id=call_id, name=name, arguments=arguments, analysis=self.reasoning, result=""
        )
        if namespace != "functions":
            step["namespace"] = namespace
        self.steps.append(step)
        self.reasoning = ""

    def output(self, call_id: object, text: str, param: str) -> None:
        """The client sent back what its function call *call_id* returned."""
        if not isinstance(call_id, str) or call_id not in self.unanswered:
            raise invalid(param, "A function's output must answer a function call that came before it.")
        self.steps[self.unanswered.pop(call_id)]["result"] = text

    def build(self, *, instructions: str, functions: list[ApiFunction], builtins: list[str]) -> ApiPrompt:
        """Return the prompt; raise ApiError when the conversation does not end where a reply can follow."""
        if self.user is None:
            raise invalid(self.root, f"The {self.root} need at least one user message.")
        if self.final and not self.steps:
            raise invalid(
                self.root,
                "The last message is the assistant's answer: end with a user message or a function's output.",
            )
        if self.unanswered:
            raise invalid(self.root, "Every function call of the last assistant turn needs its output.")
        carried = "\n\n".join(self.carried)
        prompt = ApiPrompt(
            instructions="\n\n".join(i for i in (instructions, carried) if i),
            history=self.turns,
            user=self.user,
            steps=self.steps,
            functions=functions,
        )
        if carried:
            prompt["carried"] = carried
        if builtins:
            prompt["builtins"] = builtins
        return prompt


def client_calls(records: list[ToolCallRecord]) -> list[tuple[int, ApiToolStep]]:
    """Return the calls to the client's functions a reply ended with, by their index among its tool calls:
    those with no result (the server's own tools always have one)."""
    calls = []
    for index, record in enumerate(records):
        if "result" in record:
            continue
        namespace, _, name = record["recipient"].rpartition(".")
        step = ApiToolStep(call_id="", name=name, arguments=record["arguments"], analysis="", result="")
        if namespace and namespace != "functions":
            step["namespace"] = namespace
        calls.append((index, step))
    return calls
