package config

import (
	"errors"
	"net"
	"strconv"
	"strings"
)

// Default port of an array's API when san_ip names only a host, as it does in
// every Cinder example.
const defaultArrayPort = "7401"

// hostPort checks a "host" or "host:port" and returns it as host:port. With
// defPort == "" the port is required and the host may be empty (":7400"
// listens on every interface; port 0 picks a free port); otherwise the host is
// required and defPort fills in a missing port.
func hostPort(s, defPort string) (string, error) {
	if s == "" {
		return "", errors.New("is empty")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if defPort == "" {
			return "", errors.New("needs host:port, e.g. 127.0.0.1:7400")
		}
		// No port: a name, an IPv4 address or a (possibly bracketed) IPv6 one.
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), defPort
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return "", errors.New("is not host or host:port")
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && defPort != "") || port[0] == '+' {
		return "", errors.New("has a bad port; use a number from 1 to 65535")
	}
	if host == "" && defPort != "" {
		return "", errors.New("has no host")
	}
	if host != "" {
		if err := checkHost(host); err != nil {
			return "", err
		}
	}
	if defPort != "" {
		host = canonicalHost(host)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// canonicalHost writes a host one way, so that the addresses of one array
// compare equal however they were typed: an IP address in its shortest
// form ("fd00:0::10" as "fd00::10"), a name in lower case without its
// final dot. Names are not resolved: "localhost" and "127.0.0.1" stay
// two addresses.
func canonicalHost(h string) string {
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func checkHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	bad := errors.New("has a host that is neither an IP address nor a valid host name")
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return bad
	}
	numeric := true
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for _, c := range label {
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				numeric = false
			default:
				return bad
			}
		}
	}
	// "10.0.0.300" or "10.0.0" is a mistyped address, not a host name.
	if numeric {
		return errors.New("is not a valid IP address")
	}
	return nil
}
