"""Which routes a request tries, in order: the routing rule, the weighted first tier, then
the fallbacks in declared order."""

from __future__ import annotations

import random

from lakeforge.project import LLMEndpointSpec, LLMModelSpec


class Router:
    """Orders an endpoint's routes for one request."""

    def __init__(self, spec: LLMEndpointSpec, *, rng: random.Random | None = None) -> None:
        self.spec = spec
        self._rng = rng or random.Random()
        weighted = [m for m in spec.models if m.weight]
        self._tier = weighted or spec.models[:1]
        self._weights = [m.weight or 1.0 for m in self._tier]
        self._by_name = {m.name: m for m in spec.models}

    def escalates(self, tokens_in: int, asked: bool) -> bool:
        """Whether the routing rule sends this request to its ``escalate_to`` model."""
        rule = self.spec.routing
        if rule is None:
            return False
        limit = rule.when.max_input_tokens
        return asked or (limit is not None and tokens_in > limit)

    def order(self, tokens_in: int, *, escalate: bool = False) -> list[LLMModelSpec]:
        """The routes to try: the chosen one first, then (with fallback) the others."""
        rule = self.spec.routing
        if rule is not None and self.escalates(tokens_in, escalate):
            first = self._by_name[rule.escalate_to]
        elif len(self._tier) == 1:
            first = self._tier[0]
        else:
            first = self._rng.choices(self._tier, weights=self._weights)[0]
        if not self.spec.fallback:
            return [first]
        return [first, *(m for m in self.spec.models if m is not first)]
