// Package audit tells an operator where their own setup stands against the
// customer's half of a carrier's security guide: firewall SIP and media to
// known sources, strong unique credentials, TLS and SRTP, limits on
// international dialling and spend, monitoring, and the edge's own hardening.
//
// It has two halves, both producing Findings of one Report:
//
//   - Config judges a loaded configuration offline. Every finding names the
//     file, line and dotted key it concerns, says in one sentence why it
//     matters and how to fix it (a YAML snippet where one fits). Credentials
//     are judged from their stored HA1 values only: the HA1 of every shipped
//     common password is computed for the account's own username and realm
//     and compared (auth.WeakHA1), and accounts sharing one HA1 value share
//     one secret.
//
//   - Probe sends a bounded number of SIP requests, at a bounded rate, to an
//     endpoint the operator owns, and reports what an attacker would learn:
//     whether it answers strangers and names its software, whether its
//     answers tell existing extensions from invented ones (what svwar
//     exploits), whether it relays an unauthenticated call abroad (it
//     CANCELs such a call at once), whether it challenges with MD5 only,
//     whether TLS on 5061 is offered with a valid certificate and TLS 1.2+,
//     and whether malformed requests make it reveal itself.
//
// A Report scores 100 minus a weight per finding, and renders as a terminal
// table, JSON or a self-contained HTML page grouped by responsibility.
package audit
