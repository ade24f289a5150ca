package sidecar

import (
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how much of X-Forwarded-For is read: a hostile
// client can send any number of entries.
const maxForwardedHops = 32

// ClientIP returns the request's client: the peer, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For entry that was not added
// by a trusted proxy. Entries left of the first untrusted one are the
// client's own claims and are never believed. An entry that is not an
// address stops the walk at the hop that passed it on.
func ClientIP(remoteAddr string, forwardedFor []string, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	client := ap.Addr().Unmap()
	if len(trusted) == 0 || len(forwardedFor) == 0 {
		return client
	}
	hops := splitHops(forwardedFor)
	for i := len(hops) - 1; i >= 0 && isTrusted(client, trusted); i-- {
		next, err := netip.ParseAddr(hops[i])
		if err != nil {
			break
		}
		client = next.Unmap()
	}
	return client
}

// splitHops lists the last maxForwardedHops entries of the headers.
func splitHops(headers []string) []string {
	var hops []string
	for i := len(headers) - 1; i >= 0 && len(hops) < maxForwardedHops; i-- {
		parts := strings.Split(headers[i], ",")
		for j := len(parts) - 1; j >= 0 && len(hops) < maxForwardedHops; j-- {
			hops = append(hops, strings.TrimSpace(parts[j]))
		}
	}
	// hops is right-to-left; put it back in header order.
	for i, j := 0, len(hops)-1; i < j; i, j = i+1, j-1 {
		hops[i], hops[j] = hops[j], hops[i]
	}
	return hops
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrusted reads a comma-separated list of CIDRs or addresses.
func ParseTrusted(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
