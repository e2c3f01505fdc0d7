"""The model registry, quotas on replies and daily usage: what admins set and see in Django admin."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chat.models import ReasoningEffort
from inference.runtime.catalog import TINY, answer_tokens_default, queue_for_model
from inference.runtime.engine.errors import SettingsError
from inference.runtime.engine.settings import (
    DEFAULT_CONTEXT,
    DEFAULT_N_GPU_LAYERS,
    DEFAULT_N_UBATCH,
    DEFAULT_SLOTS,
    MIN_CONTEXT,
    EngineSettings,
    engine_settings,
)

# Layers of each known model: n_cpu_moe can keep at most this many layers' experts in RAM.
MODEL_LAYERS: dict[str, int] = {"gpt-oss-20b": 24, "gpt-oss-120b": 36, TINY: 2}


class ModelSource(models.TextChoices):
    GPT_OSS_20B = "gpt-oss-20b", "gpt-oss-20b (ggml-org GGUF, 1 file)"
    GPT_OSS_120B = "gpt-oss-120b", "gpt-oss-120b (ggml-org GGUF, 3 shards)"
    TINY = TINY, "tiny (generated test model)"
    PATH = "path", "a local GGUF file (model path)"


class KVType(models.TextChoices):
    F16 = "f16", "f16"
    Q8_0 = "q8_0", "q8_0 (half the memory)"
    Q4_0 = "q4_0", "q4_0 (a quarter of the memory)"


class ServedModel(models.Model):
    """A model users may chat with, and how the GPU workers that serve it load it.

    `name` is the key that `Conversation.model_name` and the worker's `GPTOSS_MODEL` refer to.
    """

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[
            RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "Letters, digits, '.', '_' and '-' only.")
        ],
        help_text="The key conversations and GPTOSS_MODEL use, e.g. gpt-oss-20b.",
    )
    label = models.CharField(max_length=100, blank=True, help_text="Shown to users (default: the name).")
    enabled = models.BooleanField(default=True, help_text="Offered to users and checked by /healthz.")
    source = models.CharField(max_length=20, choices=ModelSource.choices, default=ModelSource.GPT_OSS_20B)
    model_path = models.CharField(
        max_length=500,
        blank=True,
        help_text="With source 'a local GGUF file': its path (split files: shard 1).",
    )
    context = models.PositiveIntegerField(
        default=DEFAULT_CONTEXT,
        validators=[MinValueValidator(MIN_CONTEXT)],
        help_text="Tokens one conversation may use.",
    )
    slots = models.PositiveSmallIntegerField(
        default=DEFAULT_SLOTS,
        validators=[MinValueValidator(1)],
        help_text="Conversations generated at once per worker; the KV cache holds context × slots.",
    )
    max_answer_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens reserved for one answer (default: min(4096, context/2))."
    )
    n_gpu_layers = models.SmallIntegerField(
        default=DEFAULT_N_GPU_LAYERS, help_text="Layers on the GPU (-1 = all)."
    )
    n_cpu_moe = models.PositiveSmallIntegerField(
        default=0, help_text="Keep the experts of the first N layers in RAM (llama.cpp's --n-cpu-moe)."
    )
    cpu_moe = models.BooleanField(default=False, help_text="Keep all experts in RAM (--cpu-moe).")
    kv_type = models.CharField(max_length=5, choices=KVType.choices, default=KVType.F16)
    n_ubatch = models.PositiveIntegerField(
        default=DEFAULT_N_UBATCH,
        validators=[MinValueValidator(1)],
        help_text="2048+ speeds prompts when experts sit in RAM.",
    )
    default_reasoning_effort = models.CharField(
        max_length=6, choices=ReasoningEffort.choices, default=ReasoningEffort.MEDIUM
    )
    queue = models.CharField(
        max_length=100, blank=True, help_text="Celery queue of its workers (default: gpu.<name>)."
    )
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="Who may use it; nobody chosen = everyone."
    )
    position = models.SmallIntegerField(default=0, help_text="Order in the users' model menu.")

    class Meta:
        ordering = ["position", "name"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def layers(self) -> int | None:
        return MODEL_LAYERS.get(self.source)

    def queue_name(self) -> str:
        return self.queue or queue_for_model(self.name)

    def answer_tokens(self) -> int:
        return self.max_answer_tokens or answer_tokens_default(self.context)

    def engine_settings(self, path: Path) -> EngineSettings:
        """Return the engine settings this row asks for, serving the file at *path*."""
        return engine_settings(
            model_path=path,
            context=self.context,
            slots=self.slots,
            n_gpu_layers=self.n_gpu_layers,
            n_cpu_moe=self.n_cpu_moe,
            cpu_moe=self.cpu_moe,
            kv_type=self.kv_type,
            n_ubatch=self.n_ubatch,
            # The engine's errors name this form's fields.
            names={"model_path": "model path"},
        )

    def clean(self) -> None:
        """Refuse settings a worker could not load with, naming the field to change."""
        errors: dict[str, str] = {}
        if self.source == ModelSource.PATH and not self.model_path:
            errors["model_path"] = (
                "Give the GGUF file's path, or choose one of the official models as source."
            )
        if self.source != ModelSource.PATH and self.model_path:
            errors["model_path"] = "Leave this empty unless the source is 'a local GGUF file'."
        if self.max_answer_tokens is not None and self.max_answer_tokens >= self.context:
            errors["max_answer_tokens"] = f"Must be below the context ({self.context:,} tokens)."
        layers = self.layers
        if layers is not None and self.n_cpu_moe > layers:
            errors["n_cpu_moe"] = (
                f"{self.source} has only {layers} layers: use 0 to {layers}, or tick cpu_moe."
            )
        if (self.cpu_moe or self.n_cpu_moe) and self.n_gpu_layers == 0:
            errors["n_gpu_layers"] = (
                "Experts can stay in RAM only when layers run on the GPU: set n_gpu_layers to -1, "
                "or turn cpu_moe / n_cpu_moe off (all on CPU already)."
            )
        if not errors:
            try:
                self.engine_settings(Path(self.model_path or "model.gguf"))
            except SettingsError as error:
                raise ValidationError(str(error)) from error
        if errors:
            raise ValidationError(errors)


class Quota(models.Model):
    """Limits on replies for one user or one group; a user's own quota wins over their groups'."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="quota"
    )
    group = models.OneToOneField(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="quota"
    )
    daily_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens (reasoning + answer) a day; empty = no limit."
    )
    max_in_flight = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Answers queued or generating at once; empty = GPTOSS_MAX_IN_FLIGHT_PER_USER.",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True)
                | Q(user__isnull=True, group__isnull=False),
                name="quota_user_xor_group",
            )
        ]

    def __str__(self) -> str:
        return f"Quota of {self.user or self.group}"

    def clean(self) -> None:
        if (self.user_id is None) == (self.group_id is None):
            raise ValidationError("Choose either a user or a group.")


class UsageDay(models.Model):
    """What one user generated on one day (in TIME_ZONE) with one model, through the chat page or the API."""

    class Source(models.TextChoices):
        CHAT = "chat", "chat page"
        API = "api", "API"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField(default=timezone.localdate, db_index=True)
    model_name = models.CharField(max_length=100)
    source = models.CharField(max_length=4, choices=Source.choices, default=Source.CHAT)
    generations = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    answer_tokens = models.PositiveBigIntegerField(default=0)
    gpu_seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-day", "user_id"]
        verbose_name = "usage per day"
        verbose_name_plural = "usage per day"
        constraints = [
            models.UniqueConstraint(fields=["user", "day", "model_name", "source"], name="usage_day_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.day} {self.model_name}"

    @property
    def generated_tokens(self) -> int:
        return self.reasoning_tokens + self.answer_tokens
