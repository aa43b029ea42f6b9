"""The scheduler alone: plans checked against outputs built by hand, no model anywhere."""

from __future__ import annotations

from collections import Counter

from brain.engine.scheduler import GenerationRequest, PrefillSlice, Scheduler, StepOutput, StepPlan

EOS = 2


def make(**options) -> tuple[Scheduler, Counter]:
    counts: Counter = Counter()
    options.setdefault("max_batch_size", 8)
    options.setdefault("kv_cache_tokens", 10_000)
    options.setdefault("context_length", 1_000)
    scheduler = Scheduler(
        eos_token_ids=frozenset({EOS}), on_background=lambda outcome: counts.update([outcome]), **options
    )
    return scheduler, counts


def ask(prompt: int, new: int, **fields) -> GenerationRequest:
    return GenerationRequest(prompt_ids=list(range(10, 10 + prompt)), max_new_tokens=new, **fields)


def slices(plan: StepPlan) -> list[PrefillSlice]:
    return [piece for group in plan.prefill for piece in group.slices]


def joined(plan: StepPlan) -> list[int]:
    """Rows that start this step: their first slice."""
    return [piece.request_id for piece in slices(plan) if piece.start == piece.reuse]


def step(scheduler: Scheduler, token: int = 7, stop: set[int] = frozenset()) -> tuple[StepPlan, dict]:
    """Plan a step and answer it as a model would: a token for every decoding row and every finished prompt."""
    plan = scheduler.schedule()
    producing = [*plan.decode, *(piece.request_id for piece in slices(plan) if piece.last)]
    output = StepOutput({row: EOS if row in stop else token for row in producing})
    return plan, {update.request_id: update for update in scheduler.update(plan, output)}


def test_requests_join_while_their_tokens_fit_the_cache_budget() -> None:
    scheduler, _ = make(kv_cache_tokens=100)
    for request_id in range(3):
        scheduler.add(request_id, ask(30, 20))  # each may come to hold 50 tokens

    plan, _ = step(scheduler)
    assert joined(plan) == [0, 1] and scheduler.waiting == 1

    plan, updates = step(scheduler, stop={0})
    assert updates[0].finish_reason == "stop" and joined(plan) == []
    plan, _ = step(scheduler)
    assert joined(plan) == [2], "the freed room went to the request that waited"


def test_a_request_alone_always_joins_and_rows_stay_within_the_batch_size() -> None:
    scheduler, _ = make(kv_cache_tokens=10, max_batch_size=2)
    scheduler.add(0, ask(40, 40))
    assert joined(step(scheduler)[0]) == [0]

    wide, _ = make(max_batch_size=2)
    for request_id in range(5):
        wide.add(request_id, ask(5, 3))
    assert joined(step(wide)[0]) == [0, 1] and wide.running == 2


def test_a_reply_ends_at_its_stop_token_or_its_length() -> None:
    scheduler, _ = make()
    scheduler.add(0, ask(5, 3))
    scheduler.add(1, ask(5, 10))
    reasons: dict[int, str | None] = {}
    tokens: dict[int, list[int]] = {0: [], 1: []}
    for turn in range(5):
        _, updates = step(scheduler, stop={1} if turn == 4 else set())
        for request_id, update in updates.items():
            if update.token is not None:
                tokens[request_id].append(update.token)
            reasons[request_id] = update.finish_reason
    assert reasons == {0: "length", 1: "stop"}
    assert len(tokens[0]) == 3 and len(tokens[1]) == 4
    assert not scheduler.has_work


def test_prefix_matches_leave_only_the_rest_to_prefill() -> None:
    asked: list[tuple[str | None, int]] = []

    class Matcher:
        def lookup(self, adapter, prompt, owner=None, public=0):
            asked.append((owner, public))
            return ("entry", 32) if adapter is None else (None, 0)

    scheduler, _ = make(prefixes=Matcher())
    scheduler.add(0, ask(40, 5, owner="telegram:1", public_prefix=16))
    scheduler.add(1, ask(40, 5, adapter="community@1"))
    plan, _ = step(scheduler)
    by_row = {piece.request_id: piece for piece in slices(plan)}
    assert (by_row[0].start, by_row[0].count, by_row[0].prefix) == (32, 8, "entry")
    assert (by_row[1].start, by_row[1].count, by_row[1].prefix) == (0, 40, None)
    assert len(plan.prefill) == 2, "two adapters share a forward pass"
    assert scheduler.reused_tokens == 32 and scheduler.prompt_tokens == 80
    assert sorted(asked, key=str) == sorted([("telegram:1", 16), (None, 0)], key=str), "whose prompt, how much public"


def test_prefill_groups_stay_within_the_token_budget() -> None:
    scheduler, _ = make(prefill_token_budget=100)
    for request_id in range(4):
        scheduler.add(request_id, ask(40, 5))
    plan, _ = step(scheduler)
    assert [len(group.slices) for group in plan.prefill] == [2, 2]


def test_cancelled_rows_leave_before_the_next_step_and_waiting_ones_never_start() -> None:
    scheduler, _ = make(max_batch_size=1)
    scheduler.add(0, ask(5, 50))
    scheduler.add(1, ask(5, 50))
    step(scheduler)
    scheduler.cancel(0)
    scheduler.cancel(1)
    plan = scheduler.schedule()
    assert plan.released == (0,) and plan.dropped == (1,) and plan.decode == ()
    assert not scheduler.has_work


def test_background_work_waits_while_members_wait_and_runs_when_the_brain_is_idle() -> None:
    scheduler, counts = make(max_batch_size=2)
    scheduler.add(0, ask(5, 50))
    scheduler.add(1, ask(5, 50))
    scheduler.add(2, ask(5, 50))  # a third member waits for a row
    scheduler.add(3, ask(5, 5, priority="background"))
    plan, _ = step(scheduler)
    assert joined(plan) == [0, 1]
    for _ in range(3):
        plan, _ = step(scheduler)
        assert 3 not in joined(plan), "background work started while a member waited"
    assert counts["delayed"] == 1

    idle, _ = make()
    idle.add(0, ask(5, 3, priority="background"))
    replies = [step(idle)[1] for _ in range(3)]
    assert replies[-1][0].finish_reason == "length", "background work starved on an idle brain"


def test_background_prompts_go_in_chunks_and_a_member_arriving_meanwhile_goes_first() -> None:
    scheduler, _ = make(background_chunk=256)
    scheduler.add(0, ask(600, 5, priority="background"))
    plan, updates = step(scheduler)
    assert [(p.start, p.count, p.last) for p in slices(plan)] == [(0, 256, False)] and updates == {}

    scheduler.add(1, ask(30, 5))
    plan, updates = step(scheduler)
    assert [piece.request_id for piece in slices(plan)] == [1], "the member's prompt waited for background work"
    assert plan.decode == () and 1 in updates

    plan, _ = step(scheduler)
    assert plan.decode == (1,) and [(p.request_id, p.start, p.count) for p in slices(plan)] == [(0, 256, 256)]
    plan, updates = step(scheduler)
    assert [(p.start, p.count, p.last) for p in slices(plan)] == [(512, 88, True)]
    assert updates[0].token == 7
    plan, _ = step(scheduler)
    assert set(plan.decode) == {0, 1}


def test_a_member_who_needs_the_room_takes_it_from_background_work() -> None:
    scheduler, counts = make(max_batch_size=2)
    scheduler.add(0, ask(5, 50, priority="background"))
    scheduler.add(1, ask(5, 50, priority="background"))
    step(scheduler)
    step(scheduler)
    scheduler.add(2, ask(5, 5))
    plan, updates = step(scheduler)
    assert plan.preempted == (1,) and joined(plan) == [2] and 2 in updates
    assert counts["preempted"] == 1

    resumed: list[PrefillSlice] = []
    member_done = False
    while not resumed:  # the member's reply ends first; then the preempted work resumes from its tokens
        plan, updates = step(scheduler)
        resumed = [piece for piece in slices(plan) if piece.request_id == 1]
        member_done = member_done or (2 in updates and updates[2].finish_reason == "length")
        assert member_done or not resumed, "background work resumed while the member still needed the room"
    assert resumed[0].start + resumed[0].count == 5 + 2, "it resumed without the tokens it had generated"


def test_waiting_background_work_of_one_key_coalesces_and_the_backlog_is_bounded() -> None:
    scheduler, counts = make(max_batch_size=1, max_background_waiting=2)
    scheduler.add(0, ask(5, 50))  # a member holds the only row
    step(scheduler)
    scheduler.add(1, ask(5, 5, priority="background", coalesce_key="fold:ann:1"))
    scheduler.add(2, ask(6, 5, priority="background", coalesce_key="fold:ann:1"))
    assert scheduler.schedule().dropped == (1,) and counts["coalesced"] == 1

    scheduler.add(3, ask(5, 5, priority="background"))
    scheduler.add(4, ask(5, 5, priority="background"))
    assert scheduler.schedule().dropped == (2,) and counts["dropped"] == 1
    assert scheduler.waiting == 2
