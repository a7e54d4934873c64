"""check_ifname: accept exactly what the kernel accepts as a device name."""

import pytest

from ovslite.names import check_ifname


def refused(name, what: str = "interface") -> str:
    with pytest.raises(ValueError) as exc:
        check_ifname(name, what)
    msg = str(exc.value)
    assert msg and "\n" not in msg, repr(msg)
    return msg


@pytest.mark.parametrize("name", ["eth0", "a", "x" * 15, "veth-1_a.b", "é" * 7 + "x", "br@0"])
def test_valid_names_returned_unchanged(name):
    assert check_ifname(name) == name


def test_16_bytes_refused():
    msg = refused("x" * 16)
    assert "15 bytes" in msg


@pytest.mark.parametrize("name", ["é" * 8, "€" * 6, "ab" + "😀" * 4])
def test_multibyte_counted_in_bytes(name):
    assert len(name) < 16 <= len(name.encode())
    refused(name)


def test_multibyte_15_bytes_ok():
    name = "€" * 5  # 5 characters, 15 bytes
    assert check_ifname(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "a/b",
        "/",
        "eth0:1",
        ":",
        "a b",
        " ",
        "a\tb",
        "a\nb",
        "eth0\r",
        "a\x0bb",
        "a\x00b",
        "a\u00a0b",
    ],
)
def test_forbidden_characters_refused(name):
    msg = refused(name)
    assert "contains" in msg


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_refused(name):
    refused(name)


def test_dots_inside_a_name_are_fine():
    assert check_ifname("...") == "..."
    assert check_ifname("a.") == "a."


def test_empty_refused():
    assert "empty" in refused("")


@pytest.mark.parametrize("name", [None, 5, ["eth0"]])
def test_not_a_string_refused(name):
    assert "not a string" in refused(name)


@pytest.mark.parametrize("name", ["tap%d", "%", "br%s0"])
def test_percent_refused_the_kernel_would_expand_it(name):
    """`ip tuntap add tap%d` makes tap0: a name with % is not the device's name."""
    assert "contains '%'" in refused(name)


def test_message_names_the_kind_and_shows_name_on_one_line():
    msg = refused("br\n0", "bridge")
    assert msg.startswith("invalid bridge name")
    assert "'br\\n0'" in msg
