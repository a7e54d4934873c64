"""Tunnel port options: OVS's defaults, and one-line errors naming the option."""

import ipaddress

import pytest

from ovslite.tunnel.options import parse_options


def test_vxlan_defaults_follow_ovs():
    opts = parse_options("vxlan", {"remote_ip": "192.168.50.2"})
    assert opts.remote_ips == (ipaddress.ip_address("192.168.50.2"),)
    assert (opts.key, opts.dst_port, opts.csum, opts.ttl, opts.tos, opts.df_default) == (
        0, 4789, False, 64, 0, True)
    assert opts.local_ip is None


def test_geneve_and_gre_defaults():
    assert parse_options("geneve", {"remote_ip": "10.0.0.1"}).dst_port == 6081
    gre = parse_options("gre", {"remote_ip": "10.0.0.1"})
    assert gre.dst_port is None and not gre.key_present


def test_every_option_given():
    opts = parse_options("vxlan", {
        "remote_ip": "192.168.50.2, 192.168.50.3", "local_ip": "192.168.50.1", "key": "0xffffff",
        "dst_port": "8472", "csum": "true", "ttl": "1", "tos": "inherit", "df_default": "false"})
    assert parse_options("vxlan", {"remote_ip": "10.0.0.1", "tos": "184"}).tos == 184  # DSCP 46
    assert [str(a) for a in opts.remote_ips] == ["192.168.50.2", "192.168.50.3"]
    assert str(opts.local_ip) == "192.168.50.1"
    assert (opts.key, opts.dst_port, opts.csum, opts.ttl, opts.tos, opts.df_default) == (
        0xFFFFFF, 8472, True, 1, None, False)


def test_gre_key_is_32_bits():
    opts = parse_options("gre", {"remote_ip": "10.0.0.1", "key": "4294967295"})
    assert opts.key == 0xFFFFFFFF and opts.key_present


def test_ipv6_remotes():
    opts = parse_options("geneve", {"remote_ip": "fd00::2", "local_ip": "fd00::1"})
    assert opts.ipv6


@pytest.mark.parametrize("tunnel_type, remote, expected", [
    ("vxlan", "10.0.0.1", False), ("geneve", "10.0.0.1", False), ("gre", "10.0.0.1", False),
    ("vxlan", "fd00::1", True), ("geneve", "fd00::1", True), ("gre", "fd00::1", False)])
def test_csum_default_is_ovs_one(tunnel_type, remote, expected):
    # vswitch.xml: unset = on for UDP IPv6 tunnels, off for GRE and IPv4 UDP tunnels
    assert parse_options(tunnel_type, {"remote_ip": remote}).csum is expected
    assert parse_options(tunnel_type, {"remote_ip": remote, "csum": "false"}).csum is False


@pytest.mark.parametrize("tunnel_type, options, expected", [
    ("vxlan", {"remote_ip": "1.2.3.4"}, 50),
    ("geneve", {"remote_ip": "1.2.3.4"}, 50),
    ("vxlan", {"remote_ip": "fd00::1"}, 70),
    ("gre", {"remote_ip": "1.2.3.4", "key": "5"}, 42),
    ("gre", {"remote_ip": "1.2.3.4"}, 38),
    ("gre", {"remote_ip": "1.2.3.4", "key": "5", "csum": "true"}, 46),
    ("gre", {"remote_ip": "fd00::1", "key": "5"}, 62),
])
def test_overhead_and_inner_mtu(tunnel_type, options, expected):
    opts = parse_options(tunnel_type, options)
    assert opts.overhead == expected
    assert opts.inner_mtu(1500) == 1500 - expected


@pytest.mark.parametrize("tunnel_type, options, message", [
    ("vxlan", {}, "remote_ip: required"),
    ("vxlan", {"remote_ip": "abc"}, "remote_ip: 'abc' is not an IP address"),
    ("vxlan", {"remote_ip": "10.0.0.1,10.0.0.1"}, "remote_ip: 10.0.0.1 is listed twice"),
    ("vxlan", {"remote_ip": "10.0.0.1,"}, "remote_ip: '10.0.0.1,' has an empty entry"),
    ("vxlan", {"remote_ip": "10.0.0.1,fd00::1"}, "remote_ip: mixes IPv4 and IPv6"),
    ("vxlan", {"remote_ip": "0.0.0.0"}, "remote_ip: '0.0.0.0' is the unspecified address"),
    ("vxlan", {"remote_ip": "239.1.1.1"}, "remote_ip: '239.1.1.1' is a multicast"),
    ("vxlan", {"remote_ip": "flow"}, "remote_ip: 'flow'"),
    ("vxlan", {"remote_ip": "10.0.0.1", "local_ip": "fd00::1"}, "local_ip: fd00::1 is IPv6"),
    ("vxlan", {"remote_ip": "10.0.0.1", "local_ip": "x"}, "local_ip: 'x' is not an IP address"),
    ("vxlan", {"remote_ip": "10.0.0.1", "key": "16777216"}, "key: 16777216 is out of range (0-16777215)"),
    ("geneve", {"remote_ip": "10.0.0.1", "key": "-1"}, "key: -1 is out of range"),
    ("gre", {"remote_ip": "10.0.0.1", "key": "4294967296"}, "key: 4294967296 is out of range"),
    ("vxlan", {"remote_ip": "10.0.0.1", "key": "flow"}, "key: 'flow' (set by OpenFlow actions) is not supported"),
    ("vxlan", {"remote_ip": "10.0.0.1", "key": "ten"}, "key: 'ten' is not a number"),
    ("vxlan", {"remote_ip": "10.0.0.1", "dst_port": "0"}, "dst_port: 0 is out of range (1-65535)"),
    ("vxlan", {"remote_ip": "10.0.0.1", "dst_port": "65536"}, "dst_port: 65536 is out of range"),
    ("gre", {"remote_ip": "10.0.0.1", "dst_port": "4789"}, "dst_port: a gre port has no UDP port"),
    ("vxlan", {"remote_ip": "10.0.0.1", "csum": "yes"}, "csum: 'yes' is not a boolean"),
    ("vxlan", {"remote_ip": "10.0.0.1", "df_default": "1"}, "df_default: '1' is not a boolean"),
    ("vxlan", {"remote_ip": "10.0.0.1", "ttl": "0"}, "ttl: 0 is out of range (1-255)"),
    ("vxlan", {"remote_ip": "10.0.0.1", "ttl": "256"}, "ttl: 256 is out of range"),
    ("vxlan", {"remote_ip": "10.0.0.1", "ttl": "inherit"}, "ttl: 'inherit' is not supported"),
    ("vxlan", {"remote_ip": "10.0.0.1", "tos": "256"}, "tos: 256 is out of range (0-255)"),
    ("vxlan", {"remote_ip": "10.0.0.1", "tos": "copy"}, "tos: 'copy' is not a number"),
    ("vxlan", {"remote_ip": "10.0.0.1", "tos": "1"}, "tos: 1 sets ECN bits"),
    ("vxlan", {"remote_ip": "10.0.0.1", "peer": "x"}, "peer: unknown option for a vxlan port"),
    ("lisp", {"remote_ip": "10.0.0.1"}, "type lisp: not supported: lisp carries IP packets"),
    ("stt", {"remote_ip": "10.0.0.1"}, "type stt: not supported: stt is obsolete"),
    ("patch", {"remote_ip": "10.0.0.1"}, "type patch: not a tunnel type"),
])
def test_bad_options_get_one_line_naming_the_option(tunnel_type, options, message):
    with pytest.raises(ValueError) as info:
        parse_options(tunnel_type, options)
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_options_are_frozen():
    opts = parse_options("vxlan", {"remote_ip": "10.0.0.1"})
    with pytest.raises(AttributeError):
        opts.key = 5
