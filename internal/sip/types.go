package sip

// Transport is the SIP transport a message travelled on (RFC 3261 section 18).
type Transport uint8

// Transports sipwarden speaks. The zero value means "not known".
const (
	TransportUnknown Transport = iota
	UDP
	TCP
	TLS
)

// String returns the upper-case Via token ("UDP", "TCP", "TLS").
func (t Transport) String() string {
	switch t {
	case UDP:
		return "UDP"
	case TCP:
		return "TCP"
	case TLS:
		return "TLS"
	}
	return "unknown"
}

// Scheme returns the URL scheme used in sipwarden's configuration ("udp", "tcp", "tls").
func (t Transport) Scheme() string {
	switch t {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	case TLS:
		return "tls"
	}
	return "unknown"
}

// Reliable reports whether the transport is a stream (no retransmissions needed).
func (t Transport) Reliable() bool { return t == TCP || t == TLS }

// ParseTransport maps a Via or URI transport token (any case) to a Transport.
func ParseTransport(b []byte) Transport {
	if len(b) != 3 {
		return TransportUnknown
	}
	c0, c1, c2 := b[0]|0x20, b[1]|0x20, b[2]|0x20
	switch {
	case c0 == 'u' && c1 == 'd' && c2 == 'p':
		return UDP
	case c0 == 't' && c1 == 'c' && c2 == 'p':
		return TCP
	case c0 == 't' && c1 == 'l' && c2 == 's':
		return TLS
	}
	return TransportUnknown
}

// Method is a SIP request method. Methods sipwarden does not know are MethodOther;
// their name is still available from Msg.MethodName.
type Method uint8

// Methods of RFC 3261 and its extensions.
const (
	MethodOther Method = iota
	INVITE
	ACK
	BYE
	CANCEL
	REGISTER
	OPTIONS
	INFO
	UPDATE
	PRACK
	SUBSCRIBE
	NOTIFY
	REFER
	MESSAGE
	PUBLISH
)

var methodNames = [...]string{
	MethodOther: "OTHER",
	INVITE:      "INVITE",
	ACK:         "ACK",
	BYE:         "BYE",
	CANCEL:      "CANCEL",
	REGISTER:    "REGISTER",
	OPTIONS:     "OPTIONS",
	INFO:        "INFO",
	UPDATE:      "UPDATE",
	PRACK:       "PRACK",
	SUBSCRIBE:   "SUBSCRIBE",
	NOTIFY:      "NOTIFY",
	REFER:       "REFER",
	MESSAGE:     "MESSAGE",
	PUBLISH:     "PUBLISH",
}

// String returns the method name; MethodOther is "OTHER" (a safe metric label).
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "OTHER"
}

// ParseMethod maps a method token (case-sensitive, RFC 3261 section 7.1) to a Method.
func ParseMethod(b []byte) Method {
	for i := INVITE; i <= PUBLISH; i++ {
		if string(b) == methodNames[i] {
			return i
		}
	}
	return MethodOther
}
