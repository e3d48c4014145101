//! The Pod subnet: a CIDR checked to be a network address with room for a gateway and Pods.

use std::net::IpAddr;

/// A CIDR, checked: the network address itself (no host bits) and room for a gateway and
/// Pods.
#[derive(Debug, Clone, Copy)]
pub(super) struct Subnet {
    network: IpAddr,
    prefix: u8,
}

impl Subnet {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| "want a CIDR such as 10.89.0.0/24".to_string())?;
        let network: IpAddr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
        let prefix: u8 = len.parse().map_err(|e| format!("prefix {len:?}: {e}"))?;
        let (bits, value) = Self::bits(network);
        // At least 2 host bits: network, gateway, one Pod (and broadcast for IPv4).
        if !(8..=bits - 2).contains(&prefix) {
            return Err(format!(
                "prefix /{prefix} must be between /8 and /{}",
                bits - 2
            ));
        }
        let host_mask = (1u128 << (bits - prefix)) - 1;
        if value & host_mask != 0 {
            let net = Self::from_bits(network, value & !host_mask);
            return Err(format!("host bits set; the network is {net}/{prefix}"));
        }
        Ok(Self { network, prefix })
    }

    fn bits(ip: IpAddr) -> (u8, u128) {
        match ip {
            IpAddr::V4(a) => (32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (128, u128::from(a)),
        }
    }

    fn from_bits(like: IpAddr, value: u128) -> IpAddr {
        match like {
            // Only called with values inside `like`'s family.
            IpAddr::V4(_) => {
                std::net::Ipv4Addr::from(u32::try_from(value).unwrap_or_default()).into()
            }
            IpAddr::V6(_) => std::net::Ipv6Addr::from(value).into(),
        }
    }

    /// host-local's default gateway: the first address after the network's.
    pub(super) fn first_host(&self) -> IpAddr {
        Self::from_bits(self.network, Self::bits(self.network).1 + 1)
    }

    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        let (bits, net) = Self::bits(self.network);
        let mask = !((1u128 << (bits - self.prefix)) - 1);
        Self::bits(ip).1 & mask == net
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_must_be_network_addresses_with_room_for_pods() {
        let s = Subnet::parse("10.89.0.0/24").unwrap();
        assert_eq!(s.first_host(), "10.89.0.1".parse::<IpAddr>().unwrap());
        assert!(s.contains("10.89.0.200".parse().unwrap()));
        assert!(!s.contains("10.89.1.1".parse().unwrap()));
        assert!(!s.contains("::1".parse().unwrap()));
        let v6 = Subnet::parse("fd00:89::/64").unwrap();
        assert_eq!(v6.first_host(), "fd00:89::1".parse::<IpAddr>().unwrap());
        let err = Subnet::parse("10.89.0.1/24").unwrap_err();
        assert!(err.contains("10.89.0.0/24"), "{err}");
        assert!(Subnet::parse("10.89.0.0/31").is_err());
        assert!(Subnet::parse("10.0.0.0/4").is_err());
        assert!(Subnet::parse("10.89.0.0").is_err());
        assert!(Subnet::parse("ten/24").is_err());
    }
}
