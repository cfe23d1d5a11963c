package dist3

import (
	layercache "github.com/layercache/go-layercache"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector is the provider's own metrics, beside the registry's cache metrics (New
// wraps the provider for those), read from the Client at each scrape:
//
//	registry_layercache_tier_served_total        Stats answered by the local tier
//	registry_layercache_tier_entries             entries the tier holds
//	registry_layercache_tier_bytes               bytes of the metadata cache's values among them
//	registry_layercache_tier_invalidations_total key names Redis reported changed
//	registry_layercache_breaker_open             1 while calls to some server are skipped
//	registry_layercache_breaker_opens_total      times a breaker opened
//	registry_layercache_error_replies_total      error replies, by code (NOPERM, OOM, ...)
//
// Register it where the registry serves its metrics (prometheus.MustRegister: the
// default registry, which distribution's /metrics serves).
func Collector(c *layercache.Client) prometheus.Collector {
	return collector{c}
}

type collector struct{ c *layercache.Client }

var (
	tierServed    = metric("tier_served_total", "Stats answered by the local tier.")
	tierEntries   = metric("tier_entries", "Entries the local tier holds.")
	tierBytes     = metric("tier_bytes", "Bytes of the metadata cache's links and manifests the local tier holds.")
	invalidations = metric("tier_invalidations_total", "Key names Redis reported changed to the local tier.")
	breakerOpen   = metric("breaker_open", "1 while calls to some Redis server are skipped.")
	breakerOpens  = metric("breaker_opens_total", "Times a breaker opened.")
	errorReplies  = prometheus.NewDesc("registry_layercache_error_replies_total", "Error replies from Redis, by code.", []string{"code"}, nil)
)

func metric(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("registry_layercache_"+name, help, nil, nil)
}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{tierServed, tierEntries, tierBytes, invalidations, breakerOpen, breakerOpens, errorReplies} {
		ch <- d
	}
}

func (x collector) Collect(ch chan<- prometheus.Metric) {
	s := x.c.Stats()
	open := 0.0
	if s.BreakerOpen {
		open = 1
	}
	ch <- prometheus.MustNewConstMetric(tierServed, prometheus.CounterValue, float64(s.TierServed))
	ch <- prometheus.MustNewConstMetric(tierEntries, prometheus.GaugeValue, float64(s.TierEntries))
	ch <- prometheus.MustNewConstMetric(tierBytes, prometheus.GaugeValue, float64(s.TierBytes))
	ch <- prometheus.MustNewConstMetric(invalidations, prometheus.CounterValue, float64(s.TierInvalidations))
	ch <- prometheus.MustNewConstMetric(breakerOpen, prometheus.GaugeValue, open)
	ch <- prometheus.MustNewConstMetric(breakerOpens, prometheus.CounterValue, float64(s.BreakerOpens))
	for code, n := range s.ErrorReplies {
		ch <- prometheus.MustNewConstMetric(errorReplies, prometheus.CounterValue, float64(n), code)
	}
}
