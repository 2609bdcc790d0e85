"""The demo data ``anvil-forge demo`` seeds: a support bot's prompts, one user per role, two versions.

Everything goes through the services, so the demo obeys the same rules (and leaves the same audit
trail) as real work. Seeding is idempotent: what exists already is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from anvil_forge.accounts.models import Membership, Organisation, Role
from anvil_forge.accounts.permissions import SystemActor
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Environment, Project, Prompt, PromptSet

ORGANISATION = "acme"
PROJECT = "support-bot"
PROMPT_SET = "core"
DEFAULT_PASSWORD = "anvil-demo"
ROLES = (Role.OWNER, Role.ADMIN, Role.EDITOR, Role.REVIEWER, Role.VIEWER)

_MODEL = {"model": "gpt-4o-mini", "temperature": 0.3}

PROMPTS_V1: list[dict[str, Any]] = [
    {
        "key": "system.persona",
        "description": "The system prompt: who the assistant is and how it behaves.",
        "template": (
            "You are {{ assistant_name }}, the customer support assistant for {{ company }}.\n"
            "Answer in a {{ tone }} tone, in {{ language }}, in at most three short paragraphs.\n"
            "{% if business_hours %}Human agents are available now: offer one if the customer asks for a person."
            "{% else %}Human agents are offline until tomorrow: offer to open a ticket instead.{% endif %}\n"
            "Never promise refunds or delivery dates that you cannot see in the order data.\n"
        ),
        "parameters": [
            {"name": "company", "type": "string", "required": True, "description": "Company name"},
            {"name": "assistant_name", "type": "string", "default": "Ada"},
            {"name": "tone", "type": "string", "default": "friendly"},
            {"name": "language", "type": "string", "default": "English"},
            {"name": "business_hours", "type": "boolean", "default": True},
        ],
        "metadata": {**_MODEL, "temperature": 0.2},
    },
    {
        "key": "greeting.welcome",
        "description": "First message of a conversation.",
        "template": (
            "Hi {{ customer_name }}! "
            '{% if plan == "enterprise" %}As an Enterprise customer you have priority support. '
            '{% elif plan == "pro" %}Thanks for being a Pro customer. {% endif %}'
            "How can I help you today?"
        ),
        "parameters": [
            {"name": "customer_name", "type": "string", "required": True},
            {"name": "plan", "type": "string", "default": "free", "description": "free, pro or enterprise"},
        ],
        "metadata": _MODEL,
    },
    {
        "key": "ticket.acknowledge",
        "description": "Confirms that a support ticket was opened.",
        "template": (
            "Thanks, {{ customer_name }}. I've opened ticket #{{ ticket_id }} for you. "
            '{% if priority == "urgent" %}It is marked urgent: someone from our team will reply within the hour.'
            "{% else %}We usually reply within {{ eta_hours }} hours.{% endif %}"
        ),
        "parameters": [
            {"name": "customer_name", "type": "string", "required": True},
            {"name": "ticket_id", "type": "string", "required": True},
            {"name": "priority", "type": "string", "default": "normal", "description": "normal or urgent"},
            {"name": "eta_hours", "type": "number", "default": 24},
        ],
        "metadata": _MODEL,
    },
    {
        "key": "order.status",
        "description": "Where an order is, and what is in it.",
        "template": (
            "Order {{ order_id }} {% if shipped %}is on its way"
            "{% if tracking_url %}: you can follow it at {{ tracking_url }}{% endif %}."
            "{% else %}has not shipped yet.{% endif %}\n"
            "It contains:\n"
            "{% for item in items %}- {{ item.quantity }} x {{ item.name }}\n{% endfor %}"
        ),
        "parameters": [
            {"name": "order_id", "type": "string", "required": True},
            {"name": "shipped", "type": "boolean", "required": True},
            {"name": "items", "type": "list", "required": True, "description": "[{name, quantity}, ...]"},
            {"name": "tracking_url", "type": "string", "default": None},
        ],
        "metadata": _MODEL,
    },
    {
        "key": "refund.policy",
        "description": "Explains what the customer can get back, by the age of the purchase.",
        "template": (
            "{% if days_since_purchase <= 30 %}Good news: your purchase is within our 30-day window, "
            "so you can get a full refund."
            "{% elif days_since_purchase <= 90 %}Your purchase is {{ days_since_purchase }} days old, "
            "so we can offer store credit for the full amount."
            "{% else %}Your purchase is older than 90 days, which is outside our refund policy, "
            "but I can pass your case to a specialist.{% endif %}"
        ),
        "parameters": [{"name": "days_since_purchase", "type": "number", "required": True}],
        "metadata": _MODEL,
    },
    {
        "key": "escalation.handoff",
        "description": "Hands the conversation over to a person.",
        "template": (
            'I\'m handing you over to {{ agent_name or "a member of our team" }}. '
            "{% if queue_position > 1 %}You are number {{ queue_position }} in the queue.{% else %}You're next!"
            "{% endif %}"
        ),
        "parameters": [
            {"name": "agent_name", "type": "string", "default": None},
            {"name": "queue_position", "type": "number", "default": 1},
        ],
        "metadata": _MODEL,
    },
    {
        "key": "errors.not_found",
        "description": "When a lookup finds nothing.",
        "template": "Sorry, I couldn't find {{ thing }}. Could you check the {{ field }} and try again?",
        "parameters": [
            {"name": "thing", "type": "string", "required": True},
            {"name": "field", "type": "string", "default": "reference"},
        ],
        "metadata": _MODEL,
    },
]

# Version 2: a warmer greeting and a clearer acknowledgement, approved and waiting to be published.
CHANGES_V2: dict[str, str] = {
    "greeting.welcome": (
        "Hello {{ customer_name }}, welcome back! "
        '{% if plan == "enterprise" %}As an Enterprise customer you have priority support. '
        '{% elif plan == "pro" %}Thanks for being a Pro customer. {% endif %}'
        "What can I do for you today?"
    ),
    "ticket.acknowledge": (
        "Thanks, {{ customer_name }}: your ticket #{{ ticket_id }} is open. "
        '{% if priority == "urgent" %}It is marked urgent, so a person will reply within the hour.'
        "{% else %}You can expect an answer within {{ eta_hours }} hours.{% endif %}"
    ),
}


@dataclass
class DemoResult:
    """What the seed did: the users with the password each has (``None``: kept an existing password)."""

    users: dict[str, str | None] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)


def demo_seed(*, password: str = DEFAULT_PASSWORD) -> DemoResult:
    """Create (or complete) the demo. Safe to run again: existing objects and passwords are kept."""
    system = SystemActor("anvil-forge demo")
    result = DemoResult()
    User = get_user_model()
    with transaction.atomic():
        users = {}
        for role in ROLES:
            user = User.objects.filter(username=str(role)).first()
            if user is None:
                user = services.user_create(actor=system, username=str(role), password=password, check_password=False)
                result.users[str(role)] = password
                result.created.append(f"user {role}")
            else:
                result.users[str(role)] = None
            users[role] = user

        organisation = Organisation.objects.filter(slug=ORGANISATION).first()
        if organisation is None:
            organisation = services.organisation_create(actor=users[Role.OWNER], slug=ORGANISATION, name="Acme Corp")
            result.created.append(f"organisation {ORGANISATION}")
        for role, user in users.items():
            if not Membership.objects.filter(organisation=organisation, user=user).exists():
                services.membership_add(actor=system, organisation=organisation, user=user, role=role)

        project = Project.objects.filter(organisation=organisation, slug=PROJECT).first()
        if project is None:
            project = services.project_create(
                actor=users[Role.OWNER],
                organisation=organisation,
                slug=PROJECT,
                name="Support bot",
                description="The prompts of the customer support assistant on acme.example.",
            )
            result.created.append(f"project {PROJECT}")
        if not Environment.objects.filter(project=project, slug="staging").exists():
            services.environment_create(
                actor=users[Role.ADMIN], project=project, slug="staging", name="Staging", accepts_review_versions=True
            )
            result.created.append("environment staging")

        if not PromptSet.objects.filter(project=project, slug=PROMPT_SET).exists():
            _seed_prompt_set(project, editor=users[Role.EDITOR], reviewer=users[Role.REVIEWER])
            result.created.append(f"prompt set {PROMPT_SET} (version 1 live in production, version 2 approved)")
    return result


def _seed_prompt_set(project: Project, *, editor: Any, reviewer: Any) -> None:
    prompt_set = services.prompt_set_create(
        actor=editor,
        project=project,
        slug=PROMPT_SET,
        name="Core conversation",
        description="What the support bot says in every conversation.",
    )
    for prompt in PROMPTS_V1:
        services.prompt_create(actor=editor, prompt_set=prompt_set, **prompt)
    v1 = services.prompt_set_submit(actor=editor, prompt_set=prompt_set)
    v1 = services.version_approve(actor=reviewer, version=v1, comment="Good to go.")
    production = Environment.objects.get(project=project, slug="production")
    services.version_publish(actor=editor, version=v1, environment=production)

    services.prompt_set_reopen(actor=editor, prompt_set=prompt_set)
    for key, template in CHANGES_V2.items():
        prompt = Prompt.objects.get(prompt_set=prompt_set, key=key)
        services.prompt_update(actor=editor, prompt=prompt, base_revision=prompt.revision, template=template)
    v2 = services.prompt_set_submit(actor=editor, prompt_set=prompt_set)
    services.version_approve(actor=reviewer, version=v2, comment="Warmer wording, approved.")
