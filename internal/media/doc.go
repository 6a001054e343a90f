// Package media anchors RTP through sipwarden: it rewrites SDP offers and
// answers so that each stream flows through a local relay, negotiates SRTP
// per leg with SDES, and forwards packets between the legs, bridging plain
// RTP and SRTP and defending the relay's ports.
package media
