"""The shared command-line conventions: absl flags, underscores, hyphenated aliases."""

import pytest

from squeezetime_jax import cli


def test_hyphenated_flag_names_become_underscored_values_untouched():
    args = ["--drop-head", "--top-k=5", "in-put.pth", "--out", "my-dir", "--", "--x-y"]
    assert cli.underscored_flags(args) == [
        "--drop_head",
        "--top_k=5",
        "in-put.pth",
        "--out",
        "my-dir",
        "--",
        "--x-y",
    ]


def make_flags():
    flags = cli.Flags("python -m tool", "A tool.")
    out = flags.string("out", None, "Where results go.", required=True)
    plain = flags.boolean("plain", False, "Bare output.")
    return flags, out, plain


def test_parse_resets_flags_between_calls_and_returns_positionals():
    flags, out, plain = make_flags()
    assert flags.parse(["a.pth", "--out=x", "--plain"]) == ["a.pth"]
    assert (out.value, plain.value) == ("x", True)
    assert flags.parse(["--out", "y"]) == []
    assert (out.value, plain.value) == ("y", False)  # --plain did not leak


def test_known_only_hands_unknown_flags_on_in_order():
    flags, out, plain = make_flags()
    rest = flags.parse(
        ["--runner_opt=1", "--out=x", "--plain", "--other=a b"], known_only=True
    )
    assert rest == ["--runner_opt=1", "--other=a b"]
    assert (out.value, plain.value) == ("x", True)


def test_missing_required_and_unknown_flags_name_the_flag(capsys):
    flags, _, _ = make_flags()
    with pytest.raises(cli.UsageError, match="--out"):
        flags.parse(["--plain"])
    with pytest.raises(cli.UsageError, match="nope"):
        flags.parse(["--out=x", "--nope"])

    @cli.exit_on_usage_error
    def main(argv=None):
        flags.parse(argv)
        return 0

    assert main(["--nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_help_lists_every_flag_and_exits_zero(capsys):
    flags, _, _ = make_flags()
    with pytest.raises(SystemExit) as exit_info:
        flags.parse(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--out: Where results go. (required)" in text
    assert "--[no]plain: Bare output." in text
