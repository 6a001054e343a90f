package sanity

import "github.com/sipwarden/sipwarden/internal/chain"

// Stage is the chain stage "sanity". It has no configuration.
type Stage struct{}

// New returns the sanity stage.
func New() *Stage { return &Stage{} }

// Name implements chain.Stage.
func (*Stage) Name() string { return "sanity" }

// Handle rejects requests that Check refuses.
func (*Stage) Handle(req *chain.Request) chain.Verdict {
	r := Check(req.Msg, req.ParseErr)
	if r.OK() {
		return chain.Next()
	}
	v := chain.ReplyWith(r.Code, r.Reason)
	v.Warning = r.Warning
	if len(r.Unsupported) > 0 {
		v.Header = "Unsupported: " + string(r.Unsupported)
	}
	return v
}
