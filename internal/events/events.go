// Package events carries sipwarden's security decisions as typed events.
//
// Every decision worth knowing (a drop of an unknown source, a limit hit, a
// malformed message, a ban, an authentication failure, a STIR/SHAKEN
// verdict, a fraud incident) is published on a Bus. Sinks (the JSON log,
// webhooks, e-mail digests, the fraud simulator) subscribe to it. Publishing
// never blocks the caller: each subscriber has a bounded queue, and an event
// that does not fit is counted as lost for that subscriber, exported as
// sipwarden_events_lost_total{subscriber} (Bus.Collector).
//
// The notification sinks (webhook.go: JSON or Slack-compatible POSTs;
// email.go: SMTP digests) share notify.go: batching, de-duplication within a
// window, retries with backoff, and a NotifyFailed event when a batch is
// given up, so that a dead channel is itself news on the others.
package events

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Kind is the type of an event.
type Kind uint8

// Event kinds. New capabilities add theirs here.
const (
	KindUnknown Kind = iota
	// UnknownSource: a request from an address that is no trunk or upstream.
	UnknownSource
	// LimitHit: a trunk's calls-per-second or concurrent-call limit refused a call.
	LimitHit
	// Malformed: a message that failed parsing or sanity checks.
	Malformed
	// NoRoute: a request that no route could place.
	NoRoute
	// ConnLimit: a stream connection refused or closed by a connection limit or timeout.
	ConnLimit
	// ConfigReloaded and ConfigRejected report reloads.
	ConfigReloaded
	ConfigRejected
	// Ban and Unban report changes of the ban list.
	Ban
	Unban
	// Scanner: a request with the signature of a scanner or attack tool.
	Scanner
	// Flood: a peer's source exceeded a flood budget.
	Flood

	// AuthSuccess, AuthFailure: a digest authentication and its outcome
	// (the reason class, never credentials); AccountLocked: an account under
	// distributed guessing was locked or restricted to its known sources.
	AuthSuccess
	AuthFailure
	AccountLocked
	// RegistrationNewSource: an account registered from an address or /24
	// (/64) it never registered from; BindingReplaced: a binding was taken
	// over by another source address.
	RegistrationNewSource
	BindingReplaced
	// Shaken: a STIR/SHAKEN verification failed, or a call could not be signed.
	Shaken
	// MediaRefused: an offer refused by a trunk's media policy (488).
	MediaRefused
	// FraudIncident: a toll-fraud rule tripped for a trunk (Reason: the rule;
	// Detail: action, scope, value and limit); one event per incident, not per call.
	FraudIncident
	// FraudRelease: a fraud incident ended (its window expired or an operator released it).
	FraudRelease
	// FraudBlocked: a call refused by the fraud stage (destination policy or an incident's action).
	FraudBlocked
	// FraudHangup: a call in progress that the fraud engine asked to end (a per-call cost cap).
	FraudHangup
	// FraudError: the fraud engine could not keep its state (saving baselines failed).
	FraudError
	// NotifyFailed: a notification sink (webhook, e-mail) gave up on a batch
	// of events (Reason: the sink type; Detail: its host, how many events,
	// how many tries and the last error, never a URL path or a password).
	NotifyFailed
	// Unauthenticated: INVITEs challenged or refused while their source had
	// not authenticated (they write no CDR); sampled, at most one event a
	// second, Detail telling how many since the previous one.
	Unauthenticated
	// CDRStore: the CDR writer's store became unreachable (Reason
	// store_unavailable: records go to the local journal) or answered again
	// (store_recovered), a record it refused was set aside in the
	// dead-letter file (dead_letter), or records were lost because the
	// journal is full (journal_full) or there is none and the queue is full
	// (queue_full).
	CDRStore
	// CallerID: a call of a digest account whose caller ID is none of the
	// account's numbers, refused (Code 403) or rewritten (Code 0).
	CallerID
	// PeerOverBudget: a configured trunk or upstream went over a flood
	// budget; its excess is shed (503 + Retry-After for INVITE and
	// REGISTER, dropped otherwise), it is never banned (Reason: the class;
	// Detail: the budget). At most one a peer, class and minute.
	PeerOverBudget
)

var kindNames = [...]string{
	KindUnknown:    "unknown",
	UnknownSource:  "unknown_source",
	LimitHit:       "limit_hit",
	Malformed:      "malformed",
	NoRoute:        "no_route",
	ConnLimit:      "conn_limit",
	ConfigReloaded: "config_reloaded",
	ConfigRejected: "config_rejected",
	Ban:            "ban",
	Unban:          "unban",
	Scanner:        "scanner",
	Flood:          "flood",

	// digest authentication and registrar
	AuthSuccess:           "auth_success",
	AuthFailure:           "auth_failure",
	AccountLocked:         "account_locked",
	RegistrationNewSource: "registration_new_source",
	BindingReplaced:       "binding_replaced",
	Shaken:                "shaken",
	MediaRefused:          "media_refused",
	FraudIncident:         "fraud_incident",
	FraudRelease:          "fraud_release",
	FraudBlocked:          "fraud_blocked",
	FraudHangup:           "fraud_hangup",
	FraudError:            "fraud_error",
	NotifyFailed:          "notify_failed",
	Unauthenticated:       "unauthenticated",
	CDRStore:              "cdr_store",
	CallerID:              "caller_id",
	PeerOverBudget:        "peer_over_budget",
}

// String returns the kind's stable name (used in logs and as a metric label).
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Event is one security decision. Fields that do not apply are left zero.
// Strings are copies: an Event never points into a pooled message buffer.
type Event struct {
	Time   time.Time
	Kind   Kind
	Stage  string // the stage or layer that decided ("acl", "transport")
	Reason string // stable reason token, as in the verdict
	Src    netip.AddrPort
	// Transport is "UDP", "TCP" or "TLS" when known.
	Transport string
	Trunk     string
	Method    string
	CallID    string
	// Code is the SIP status sent, 0 when the message was dropped.
	Code int
	// Detail is a short human-readable explanation (never a secret).
	Detail string
}

// Bus fans events out to subscribers.
type Bus struct {
	mu   sync.RWMutex
	subs []*Subscription
	// gone keeps the lost counts of removed subscribers by name, so that
	// the exported counter never goes down.
	gone map[string]uint64
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{} }

// Subscription is one subscriber's bounded queue.
type Subscription struct {
	Name string
	C    <-chan Event
	c    chan Event
	lost atomic.Uint64
}

// Lost is how many events did not fit in this subscriber's queue.
func (s *Subscription) Lost() uint64 { return s.lost.Load() }

// Subscribe adds a subscriber with a queue of size buf.
func (b *Bus) Subscribe(name string, buf int) *Subscription {
	c := make(chan Event, buf)
	s := &Subscription{Name: name, C: c, c: c}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.mu.Unlock()
	return s
}

// Unsubscribe removes s and closes its channel.
func (b *Bus) Unsubscribe(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, x := range b.subs {
		if x == s {
			b.subs = append(b.subs[:i], b.subs[i+1:]...)
			b.retire(s)
			close(s.c)
			return
		}
	}
}

// Publish delivers e to every subscriber without blocking. A nil Bus discards.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.RLock()
	for _, s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.lost.Add(1)
		}
	}
	b.mu.RUnlock()
}

// Close unsubscribes everyone (their channels are closed).
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		b.retire(s)
		close(s.c)
	}
	b.subs = nil
}

// retire keeps s's lost count; b.mu is held.
func (b *Bus) retire(s *Subscription) {
	if b.gone == nil {
		b.gone = map[string]uint64{}
	}
	b.gone[s.Name] += s.lost.Load()
}

var lostDesc = prometheus.NewDesc("sipwarden_events_lost_total",
	"Events that did not fit in a subscriber's queue and never reached it, by subscriber (log, webhook, email, ...).",
	[]string{"subscriber"}, nil)

// Collector exports the subscribers' lost events as
// sipwarden_events_lost_total{subscriber}: subscribers of the same name
// (several webhooks) are summed, and a removed subscriber's count stays.
func (b *Bus) Collector() prometheus.Collector { return lostCollector{b} }

type lostCollector struct{ b *Bus }

func (c lostCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lostDesc }

func (c lostCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	b.mu.RLock()
	n := make(map[string]uint64, len(b.subs)+len(b.gone))
	for name, v := range b.gone {
		n[name] = v
	}
	for _, s := range b.subs {
		n[s.Name] += s.lost.Load()
	}
	b.mu.RUnlock()
	for name, v := range n {
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(v), name)
	}
}
