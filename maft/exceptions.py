"""Domain errors. The API layer maps them to HTTP; nothing here knows about HTTP."""


class MaftError(Exception):
    """Base class of every domain error."""


class UnknownTaskError(MaftError):
    """A task name that is not in the registry."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(sorted(known))}")
        self.name = name


class InvalidTaskOptionError(MaftError):
    """A task option (difficulty knob, dataset path) that cannot be used."""


class InferenceError(MaftError):
    """The inference server failed a request (reachable, but it answered with an error)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class InferenceUnavailableError(InferenceError):
    """The inference server cannot be reached."""


class InferenceTimeoutError(InferenceError):
    """The inference server did not answer in time."""


class AdapterNotFoundError(InferenceError):
    """The inference server does not know (and cannot resolve) a lora_name."""

    def __init__(self, lora_name: str, detail: str = "") -> None:
        msg = f"adapter {lora_name!r} is not loadable by the inference server"
        super().__init__(f"{msg}: {detail}" if detail else msg, status_code=404)
        self.lora_name = lora_name


class AdapterUntrustedError(InferenceError):
    """The inference server serves a lora_name from a folder other than its own in the store
    (loaded at run time from elsewhere): it is not used."""

    def __init__(self, lora_name: str, root: str, expected: str) -> None:
        super().__init__(f"adapter {lora_name!r} is served from {root}, not from the adapter "
                         f"store ({expected}); restart inference to drop it", status_code=409)
        self.lora_name = lora_name


class DebateFailedError(MaftError):
    """A debate stopped part-way; `cause` is the inference error that stopped it."""

    def __init__(self, cause: InferenceError, partial: list,
                 debate_id: object = None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.partial = partial
        self.debate_id = debate_id


class SocietyError(MaftError):
    """The society (set of adapters) cannot serve the request."""


class SocietyTooSmallError(SocietyError):
    """A request asks for more agents than the active society has."""


class NotFoundError(MaftError):
    """A stored object does not exist."""

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} {key} not found")
        self.kind = kind
        self.key = key


class ConflictError(MaftError):
    """The request conflicts with stored state (e.g. a run already in progress)."""


class AdapterInvalidError(MaftError):
    """An adapter folder that vLLM could not serve (bad config, rank too high, wrong base...)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"adapter {where} is not servable: {reason}")
        self.where = where
        self.reason = reason


class AdapterExistsError(MaftError):
    """A lora_name already published: names are immutable and never reused."""

    def __init__(self, lora_name: str, detail: str = "") -> None:
        msg = f"adapter {lora_name!r} already exists in the store"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.lora_name = lora_name


class QueueUnavailableError(MaftError):
    """The training queue (Celery broker) cannot accept work."""


class ChildExitedError(MaftError):
    """A service process started by a launcher exited (or never started)."""

    def __init__(self, name: str, returncode: int | None, log_tail: str) -> None:
        super().__init__(f"{name} exited with {returncode}; last lines of its log:\n{log_tail}")
        self.name, self.returncode, self.log_tail = name, returncode, log_tail


class ChildNotReadyError(MaftError):
    """A service process did not become ready in time."""


class InvalidRequestError(MaftError):
    """A request the product cannot serve as asked (e.g. a prompt over the model's context)."""


class PromptTooLongError(InvalidRequestError):
    """A debate's prompts, at their largest, do not fit the model's context."""


class OverloadedError(MaftError):
    """Every debate slot and queue place is taken; retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(MaftError):
    """A key made more requests than its limit allows; retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
