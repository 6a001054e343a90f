package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// knownKeys (the "valid keys here" of an unknown-key error) must list
// exactly the YAML keys of each raw type, inline fields included.
func TestKnownKeysMatchTheSchema(t *testing.T) {
	types := map[string]any{
		"rawAuth":         rawAuth{},
		"rawPolicy":       rawPolicy{},
		"rawBruteForce":   rawBruteForce{},
		"rawAccount":      rawAccount{},
		"rawFraud":        rawFraud{},
		"rawWangiri":      rawWangiri{},
		"rawTrunkFraud":   rawTrunkFraud{},
		"rawHotEntry":     rawHotEntry{},
		"rawFraudRule":    rawFraudRule{},
		"rawMedia":        rawMedia{},
		"rawTrunkMedia":   rawTrunkMedia{},
		"rawNotify":       rawNotify{},
		"rawWebhook":      rawWebhook{},
		"rawEmail":        rawEmail{},
		"rawRegistrar":    rawRegistrar{},
		"rawShaken":       rawShaken{},
		"rawShakenCache":  rawShakenCache{},
		"rawShakenSigner": rawShakenSigner{},
		"rawShakenTrunk":  rawShakenTrunk{},
		"rawConfig":       rawConfig{},
		"rawGeoIP":        rawGeoIP{},
		"rawFirewall":     rawFirewall{},
		"rawFlood":        rawFlood{},
		"rawFloodProfile": rawFloodProfile{},
		"rawBans":         rawBans{},
		"rawFeed":         rawFeed{},
		"rawScanner":      rawScanner{},
		"rawListen":       rawListen{},
		"rawTLS":          rawTLS{},
		"rawAdmin":        rawAdmin{},
		"rawAdminTLS":     rawAdminTLS{},
		"rawStorage":      rawStorage{},
		"rawCDR":          rawCDR{},
		"rawLog":          rawLog{},
		"rawSIP":          rawSIP{},
		"rawUpstream":     rawUpstream{},
		"rawTrunk":        rawTrunk{},
		"rawTrunkLimits":  rawTrunkLimits{},
		"rawTrunkTLS":     rawTrunkTLS{},
	}
	for name, v := range types {
		var tags []string
		var walk func(rt reflect.Type)
		walk = func(rt reflect.Type) {
			for i := range rt.NumField() {
				f := rt.Field(i)
				tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if opts == "inline" {
					walk(f.Type)
					continue
				}
				if tag != "" && tag != "-" {
					tags = append(tags, tag)
				}
			}
		}
		walk(reflect.TypeOf(v))
		got := slices.Clone(knownKeys[name])
		slices.Sort(tags)
		slices.Sort(got)
		if !slices.Equal(tags, got) {
			t.Errorf("knownKeys[%q] = %v, the schema has %v", name, got, tags)
		}
	}
}
