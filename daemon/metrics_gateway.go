package daemon

// This file counts the gateway (daemon/gateway): its sessions, the
// messages it signed, encrypted, passed, refused or failed to send, and
// the errors of its next hop, as Prometheus metrics and for `smimed
// status`.

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/gateway"
)

// gatewayMetrics is the gateway's gateway.Monitor.
type gatewayMetrics struct {
	sessions    prometheus.Gauge
	messages    *prometheus.CounterVec
	relayErrors prometheus.Counter

	open    atomic.Int64
	counts  [len(gatewayOutcomes)]atomic.Uint64
	relayed atomic.Uint64 // relay errors
}

var gatewayOutcomes = [...]string{gateway.OutcomeSigned, gateway.OutcomeEncrypted, gateway.OutcomeSignedEncrypted,
	gateway.OutcomePassed, gateway.OutcomeRefused, gateway.OutcomeFailed}

func newGatewayMetrics(reg *prometheus.Registry) *gatewayMetrics {
	g := &gatewayMetrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smimed_gateway_sessions",
			Help: "SMTP sessions open on the gateway."}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smimed_gateway_messages_total",
			Help: "Messages the gateway finished, by outcome: signed, encrypted, signed_encrypted, passed (unchanged), refused (by policy, 5xx), failed (not sent: a local error or the next hop's refusal)."}, []string{"outcome"}),
		relayErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "smimed_gateway_relay_errors_total",
			Help: "Times the gateway's next hop could not be reached or its session broke."}),
	}
	for _, o := range gatewayOutcomes {
		g.messages.WithLabelValues(o)
	}
	reg.MustRegister(g.sessions, g.messages, g.relayErrors)
	return g
}

func (g *gatewayMetrics) SessionStarted() { g.open.Add(1); g.sessions.Inc() }
func (g *gatewayMetrics) SessionEnded()   { g.open.Add(-1); g.sessions.Dec() }
func (g *gatewayMetrics) RelayError()     { g.relayed.Add(1); g.relayErrors.Inc() }

func (g *gatewayMetrics) Message(outcome string) {
	g.messages.WithLabelValues(outcome).Inc()
	for i, o := range gatewayOutcomes {
		if o == outcome {
			g.counts[i].Add(1)
		}
	}
}

// status is the gateway's part of `smimed status`.
func (g *gatewayMetrics) status(mode, listen, relay string) *admin.GatewayStatus {
	st := &admin.GatewayStatus{Mode: mode, Listen: listen, Relay: relay, Sessions: g.open.Load(),
		RelayErrors: g.relayed.Load(), Messages: map[string]uint64{}}
	for i, o := range gatewayOutcomes {
		st.Messages[o] = g.counts[i].Load()
	}
	return st
}
