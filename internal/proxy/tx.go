package proxy

import (
	"net/netip"
	"time"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
	"github.com/sipwarden/sipwarden/internal/transport"
)

// flow is one side of a call as the transport sees it: where to send, and how.
type flow struct {
	transport sip.Transport
	addr      netip.AddrPort
	conn      *transport.Conn     // stream connection, when known
	listener  *transport.Listener // the listener to send from (nil: the transport picks)
}

type txState uint8

const (
	stateTrying     txState = iota // client: Calling/Trying; server: Proceeding before any response but our 100
	stateProceeding                // a provisional response was seen (client) / relayed (server)
	stateCompleted                 // a final non-2xx (INVITE) or any final (non-INVITE)
	stateAccepted                  // INVITE with a 2xx (RFC 6026)
	stateConfirmed                 // server INVITE: ACK received for the non-2xx
	stateTerminated
)

// serverTx is a request we received and answer for (RFC 3261 17.2).
type serverTx struct {
	key      string
	method   sip.Method
	req      []byte // a copy of the request as received (to build our own responses)
	from     flow   // where responses go
	state    txState
	lastResp []byte // the last response sent (for retransmissions); nil before any but 100
	trying   []byte // our 100 Trying, resent for INVITE retransmissions before any other response
	client   *clientTx
	dialog   *dialog
	// interval is timer G's current value.
	interval time.Duration
	// cancelled is set when the caller CANCELled this INVITE.
	cancelled bool
	// for failover: the remaining targets after the current one.
	alternates []config.Target
	created    time.Time
	// retarget is applied to every forwarded copy (failover included).
	retarget retarget
	// mediaDlg is the anchored dialog whose session descriptions this
	// transaction carries (media.go); fromCaller says who sent the request,
	// offered whether it carried an offer.
	mediaDlg   *dialog
	fromCaller bool
	offered    bool
	// retr is timer G; life is timer H, I, J or the RFC 6026 wait.
	retr, life timer
	// unauth: a reply of ours to a source that had not authenticated
	// (reflect.go): never retransmitted by timer G, resent only within
	// the destination's reply budget.
	unauth bool
}

// clientTx is a request we sent (RFC 3261 17.1).
type clientTx struct {
	key      string
	branch   string
	method   sip.Method
	sent     []byte // the request as sent (retransmissions, CANCEL, ACK)
	to       flow
	state    txState
	server   *serverTx // the transaction this one forwards (nil for our own CANCEL)
	interval time.Duration
	// gotProvisional is set once any provisional response arrived (CANCEL may go now).
	gotProvisional bool
	// cancelPending: a CANCEL is due as soon as a provisional response arrives (RFC 3261 9.1).
	cancelPending bool
	// retr is timer A or E; life is timer B, C (restarted by each
	// provisional response), D, F, K or L.
	retr, life timer
	// hangup marks a BYE of our own (hangup.go), counted in
	// Proxy.pendingByes until it is answered or times out.
	hangup bool
}

// dialog is an INVITE dialog from the initial INVITE to its end.
type dialog struct {
	key       string // callID + "\x00" + caller tag
	callID    string
	callerTag string
	calleeTag string
	confirmed bool
	caller    flow // where the caller is (requests from the callee go there)
	callee    flow // where the callee is (requests from the caller go there)
	lastSeen  time.Time

	holds  [chain.MaxHolds]chain.Releaser
	nholds int

	// CDR fields
	trunk, upstream, direction string
	src                        string
	transport                  string
	from, to                   string
	start, answer              time.Time
	cancelled                  bool

	// media is the call's media session (nil: not anchored). ackAnswer is
	// set when a 2xx carried an offer (offerless INVITE): the ACK from the
	// INVITE's sender (ackFromCaller) carries the answer.
	media    chain.MediaSession
	identity string // the STIR/SHAKEN outcome, for the CDR

	// For Hangup (hangup.go): the caller's From and Contact (from the
	// INVITE), the callee's To and Contact (from the 2xx), the INVITE's
	// server transaction while it lasts, the highest CSeq seen from each
	// side, and the stage and reason a hangup of a ringing call leaves for
	// the CDR.
	callerFrom, callerContact string
	calleeTo, calleeContact   string
	inviteTx                  *serverTx
	callerCSeq, calleeCSeq    uint32
	endStage, endReason       string
	ackAnswer, ackFromCaller  bool
	// idle is the inactivity timer of a confirmed dialog.
	idle timer
	// interrupted: the call was ended by a stop (hangup.go), so its CDR
	// says interrupted.
	interrupted bool
	// callerRoute and calleeRoute are the Route values of a BYE of our own
	// towards each side: the dialog's Record-Route entries on that side of
	// us, nearest first ("" when we are the last proxy on that side).
	callerRoute, calleeRoute string
	// topo hides the protected party of the call (topology.go).
	topo topoDialog
}

// answered tells the call's holds that implement chain.Answerer.
func (d *dialog) answered(at time.Time) {
	for _, h := range d.holds[:d.nholds] {
		if a, ok := h.(chain.Answerer); ok {
			a.Answered(at)
		}
	}
}

func (d *dialog) release() {
	for i := range d.holds[:d.nholds] {
		d.holds[i].Release()
		d.holds[i] = nil
	}
	d.nholds = 0
}
