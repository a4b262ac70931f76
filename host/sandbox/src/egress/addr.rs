//! Which destination addresses are global: one table mirroring the IANA
//! IPv4 and IPv6 special-purpose address registries, plus the IPv6 forms
//! that embed an IPv4 address (mapped, compatible, translated, NAT64, 6to4,
//! Teredo). The gateway reaches only global addresses unless the operator
//! allows an internal destination by name.
//!
//! Deliberately stricter than the registries where a block is marked
//! globally reachable only in part (192.0.0.0/24, 2001::/23): nothing a
//! sandbox legitimately needs lives there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `(network, prefix length, name)`; the name appears in denials.
const V4: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "\"this network\" (0.0.0.0/8)"),
    (0x0a00_0000, 8, "private (10.0.0.0/8)"),
    (0x6440_0000, 10, "shared address space (100.64.0.0/10)"),
    (0x7f00_0000, 8, "loopback (127.0.0.0/8)"),
    (0xa9fe_0000, 16, "link-local (169.254.0.0/16)"),
    (0xac10_0000, 12, "private (172.16.0.0/12)"),
    (0xc000_0000, 24, "IETF protocol assignments (192.0.0.0/24)"),
    (0xc000_0200, 24, "documentation (192.0.2.0/24)"),
    (0xc058_6300, 24, "6to4 relay anycast (192.88.99.0/24)"),
    (0xc0a8_0000, 16, "private (192.168.0.0/16)"),
    (0xc612_0000, 15, "benchmarking (198.18.0.0/15)"),
    (0xc633_6400, 24, "documentation (198.51.100.0/24)"),
    (0xcb00_7100, 24, "documentation (203.0.113.0/24)"),
    (0xe000_0000, 4, "multicast (224.0.0.0/4)"),
    (0xf000_0000, 4, "reserved (240.0.0.0/4)"),
];

/// IPv6 blocks that are never global. The IPv4-embedding forms whose
/// embedded address decides (mapped, NAT64 well-known prefix) are handled
/// before this table.
const V6: &[(u128, u8, &str)] = &[
    (0, 96, "IPv4-compatible, loopback or unspecified (::/96)"),
    (0xffffu128 << 48, 96, "IPv4-translated (::ffff:0:0:0/96)"),
    (0x0064_ff9b_0001u128 << 80, 48, "local-use IPv4/IPv6 translation (64:ff9b:1::/48)"),
    (0x0100u128 << 112, 64, "discard-only (100::/64)"),
    (0x2001u128 << 112, 23, "IETF protocol assignments, Teredo (2001::/23)"),
    (0x2001_0db8u128 << 96, 32, "documentation (2001:db8::/32)"),
    (0x2002u128 << 112, 16, "6to4 (2002::/16)"),
    (0x3fffu128 << 112, 20, "documentation (3fff::/20)"),
    (0x5f00u128 << 112, 16, "segment routing (5f00::/16)"),
    (0xfc00u128 << 112, 7, "unique local (fc00::/7)"),
    (0xfe80u128 << 112, 10, "link-local (fe80::/10)"),
    (0xfec0u128 << 112, 10, "site-local (fec0::/10)"),
    (0xff00u128 << 112, 8, "multicast (ff00::/8)"),
];

/// The special-purpose range `ip` falls in, or `None` for a global address.
pub fn non_global(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_global_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => non_global_v4(v4),
            None => non_global_v6(v6),
        },
    }
}

fn non_global_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let a = u32::from(ip);
    V4.iter().find(|(net, len, _)| a & mask32(*len) == *net).map(|(_, _, name)| *name)
}

fn non_global_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let a = u128::from(ip);
    V6.iter().find(|(net, len, _)| a & mask128(*len) == *net).map(|(_, _, name)| *name)
}

/// The IPv4 address a connection to `ip` really reaches, for the forms whose
/// embedded address is all that matters: IPv4-mapped (`::ffff:a.b.c.d`, the
/// kernel connects to IPv4) and the NAT64 well-known prefix
/// (`64:ff9b::a.b.c.d`, translated to IPv4 by the network).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let a = u128::from(ip);
    let low = Ipv4Addr::from(a as u32);
    if a >> 32 == 0xffff || a >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low);
    }
    None
}

/// `ip` with IPv4-mapped and NAT64 forms reduced to their IPv4 address (for
/// comparing with the host's own addresses).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
}

fn mask128(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_well_formed() {
        for (net, len, name) in V4 {
            assert_eq!(net & !mask32(*len), 0, "{name}");
        }
        for (net, len, name) in V6 {
            assert_eq!(net & !mask128(*len), 0, "{name}");
        }
    }

    #[test]
    fn classifies_every_special_range() {
        let denied = [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.9",
            "192.0.0.170",
            "192.0.2.7",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.5",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6
            "::",
            "::1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::808:808",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "2002:808:808::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ];
        for s in denied {
            let ip: IpAddr = s.parse().unwrap();
            assert!(non_global(ip).is_some(), "{s} must not be global");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.167.1.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2003::1",
        ];
        for s in allowed {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(non_global(ip), None, "{s} is global");
        }
    }

    #[test]
    fn names_the_range() {
        assert_eq!(non_global("::ffff:127.0.0.1".parse().unwrap()), Some("loopback (127.0.0.0/8)"));
        assert_eq!(non_global("2002:7f00:1::".parse().unwrap()), Some("6to4 (2002::/16)"));
        assert_eq!(canonical("64:ff9b::a00:1".parse().unwrap()), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
