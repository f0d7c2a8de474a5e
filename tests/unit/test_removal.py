"""What remove_folder.sh prints, read back (its behaviour is tested for real in
tests/integration/test_cleanup.py)."""

from __future__ import annotations

import pytest

from airflow_provider_locusts.swarm.host_commands import Removal, parse_removal, remove_folder_command


def test_a_renamed_root_is_named_in_its_parent_folder():
    removal = parse_removal("/scratch/swarms/s1/", b"@removing .s1.removing-Ab3dE6gH9k\n@leftovers 2\n")
    assert removal == Removal("/scratch/swarms/s1/", "/scratch/swarms/.s1.removing-Ab3dE6gH9k", leftovers=2)
    assert removal.line() == (
        "/scratch/swarms/s1/ renamed to .s1.removing-Ab3dE6gH9k, its files deleted in the background; "
        "2 unfinished earlier removal(s) next to it finished too"
    )
    assert parse_removal("s1", b"@removing .s1.removing-Ab3dE6gH9k\n@leftovers 0\n").hidden == "./.s1.removing-Ab3dE6gH9k"


def test_removed_in_place_and_absent_are_told_apart():
    assert parse_removal("/r/s", b"@removed\n@leftovers 0\n").line() == "/r/s removed in place"
    assert parse_removal("/r/s", b"@absent\n").line() == "/r/s was already gone"


@pytest.mark.parametrize("output", [b"", b"@leftovers 1\n", b"rm: cannot remove\n"])
def test_anything_else_is_an_error(output):
    with pytest.raises(ValueError):
        parse_removal("/r/s", output)


def test_only_the_two_kinds_of_folder_are_removed():
    script, args = remove_folder_command("/r/s", "root")
    assert args == ["/r/s", "root"] and "rename" in script
    with pytest.raises(ValueError):
        remove_folder_command("/r/s", "anything")
