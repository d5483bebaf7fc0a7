"""Discord's rule for command permission overrides, as ``bot.rules.command_allowed`` applies it to
the paths Discord does not check (buttons, forms, reactions)."""

from bot.rules import CHANNEL, ROLE, USER, command_allowed

GUILD, CHANNEL_ID, USER_ID, MODS, MUTED = 1000, 2000, 3000, 4000, 5000


Override = dict[str, object]


def allowed(command: list[Override], app: list[Override] | None = None) -> bool:
    return command_allowed(
        [command, app or []],
        guild_id=GUILD,
        channel_id=CHANNEL_ID,
        user_id=USER_ID,
        role_ids=frozenset({GUILD, MODS, MUTED}),
    )


def o(target: int, kind: int, permission: bool) -> dict[str, object]:
    return {"id": str(target), "type": kind, "permission": permission}


def test_no_overrides_let_everyone_use_it() -> None:
    assert allowed([])


def test_the_members_own_override_wins_over_their_roles() -> None:
    assert not allowed([o(USER_ID, USER, False), o(MODS, ROLE, True)])
    assert allowed([o(USER_ID, USER, True), o(GUILD, ROLE, False)])


def test_one_allowing_role_is_enough_and_roles_win_over_everyone() -> None:
    assert allowed([o(MODS, ROLE, True), o(MUTED, ROLE, False)])
    assert not allowed([o(MUTED, ROLE, False)])
    assert allowed([o(GUILD, ROLE, False), o(MODS, ROLE, True)])
    assert not allowed([o(GUILD, ROLE, False)])


def test_the_commands_own_overrides_win_over_the_applications() -> None:
    assert allowed([o(GUILD, ROLE, True)], [o(GUILD, ROLE, False)])
    assert not allowed([], [o(GUILD, ROLE, False)])


def test_a_channel_can_be_forbidden_alone_or_with_all_channels() -> None:
    assert not allowed([o(CHANNEL_ID, CHANNEL, False)])
    assert not allowed([o(GUILD - 1, CHANNEL, False)])
    assert allowed([o(GUILD - 1, CHANNEL, False), o(CHANNEL_ID, CHANNEL, True)])
    assert allowed([o(CHANNEL_ID, CHANNEL, True)], [o(CHANNEL_ID, CHANNEL, False)])
