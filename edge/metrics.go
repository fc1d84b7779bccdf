package edge

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the edge's Prometheus metrics, in a registry of its own so
// that several edges can live in one process (tests, the benchmark).
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	bytes         *prometheus.CounterVec
	inFlight      prometheus.Gauge
	refusals      *prometheus.CounterVec
	tokens        *prometheus.CounterVec
	decisions     *prometheus.CounterVec
	policyEval    prometheus.Histogram
	policyErrors  prometheus.Counter
	policyReloads *prometheus.CounterVec
	auditErrors   prometheus.Counter
	pluginErrors  prometheus.Counter
	pluginTime    prometheus.Histogram
	tunnels       prometheus.GaugeFunc
	connectors    prometheus.GaugeFunc
}

func newMetrics(r *registry) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_edge_requests_total",
			Help: "Agent requests by resource, HTTP method, MCP method and status code.",
		}, []string{"resource", "method", "mcp_method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "airlock_edge_response_header_seconds",
			Help:    "Time from receiving an agent request to sending the response head, by resource and HTTP method.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"resource", "method"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_edge_body_bytes_total",
			Help: "Body bytes carried, by resource and direction (in: agent to upstream, out: upstream to agent).",
		}, []string{"resource", "direction"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "airlock_edge_streams_in_flight",
			Help: "Tunnel streams open for agent requests.",
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_edge_tokens_total",
			Help: "Access tokens issued by grant, and refused on MCP requests by reason (missing, invalid, insufficient_scope).",
		}, []string{"event"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_edge_decisions_total",
			Help: "Policy decisions by resource, MCP method and result (allow, deny).",
		}, []string{"resource", "mcp_method", "decision"}),
		policyEval: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "airlock_policy_eval_seconds",
			Help:    "Time to evaluate the policy for one request.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025},
		}),
		policyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_policy_eval_errors_total",
			Help: "Policy evaluations that failed (each a denial).",
		}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_policy_reloads_total",
			Help: "Policy reloads by result (ok, failed: the last good policy stays).",
		}, []string{"result"}),
		pluginTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "airlock_plugin_seconds",
			Help:    "Time the plugins took for one request (enrich and decide together).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5},
		}),
		pluginErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_plugin_errors_total",
			Help: "Plugin calls that failed, timed out or found the plugin down (each a denial).",
		}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_edge_audit_errors_total",
			Help: "Decision records the audit file could not take (each a denial unless audit_fail_open).",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_edge_connector_refusals_total",
			Help: "Connector hellos the edge refused, by reason class.",
		}, []string{"reason"}),
	}
	m.tunnels = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "airlock_edge_tunnels",
		Help: "Acknowledged tunnel connections from connectors.",
	}, func() float64 { n, _ := r.counts(); return float64(n) })
	m.connectors = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "airlock_edge_connectors",
		Help: "Connector processes with at least one tunnel up.",
	}, func() float64 { _, n := r.counts(); return float64(n) })
	m.reg.MustRegister(m.requests, m.latency, m.bytes, m.inFlight, m.refusals, m.tokens,
		m.decisions, m.policyEval, m.policyErrors, m.policyReloads, m.auditErrors, m.pluginErrors, m.pluginTime, m.tunnels, m.connectors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// mcpMethodLabel bounds the mcp_method label to the methods MCP defines,
// so that a client inventing methods cannot grow the metric without end.
func mcpMethodLabel(method string) string {
	switch {
	case method == "":
		return "-"
	case strings.HasPrefix(method, "notifications/"):
		return "notifications"
	case strings.HasPrefix(method, "tasks/"):
		return "tasks"
	}
	switch method {
	case "initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read",
		"resources/templates/list", "resources/subscribe", "resources/unsubscribe", "prompts/list",
		"prompts/get", "completion/complete", "logging/setLevel":
		return method
	}
	return "other"
}
