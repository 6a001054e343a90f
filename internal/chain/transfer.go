package chain

// A TransferPolicy judges where a call of a trunk may be sent on by someone
// other than the trunk's own INVITE: the target of a REFER from the trunk
// (Refer-To) or of a 3xx from the upstream (Contact). The fraud stage
// implements it with the trunk's destination policy, so a transfer reaches
// only what a new call from the trunk could reach.
type TransferPolicy interface {
	// CheckTransfer returns Next() when a new call from req.Trunk to target
	// (a sip:, sips: or tel: URI) would pass the destination policy, else
	// the verdict (Reply) that call would get. req.Msg is the REFER or the
	// 3xx that asks for it, req.Src the trunk's address (for the event).
	CheckTransfer(req *Request, target []byte) Verdict
}
