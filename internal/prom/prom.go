// Package prom is the one way the services build their Prometheus
// registries: a registry per service instance (tests run several in one
// process), its series under one namespace, with the Go runtime's and the
// process's collectors.
package prom

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry is a service's registry.
type Registry struct {
	*prometheus.Registry
	namespace string
}

// NewRegistry returns a registry whose series are named namespace_….
func NewRegistry(namespace string) *Registry {
	r := &Registry{Registry: prometheus.NewRegistry(), namespace: namespace}
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Gauge registers a gauge.
func (r *Registry) Gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: r.namespace, Name: name, Help: help})
	r.MustRegister(g)
	return g
}

// Counter registers a counter.
func (r *Registry) Counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: r.namespace, Name: name, Help: help})
	r.MustRegister(c)
	return c
}

// GaugeFunc registers a gauge whose value f gives at each scrape.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: r.namespace, Name: name, Help: help}, f))
}

// CounterVec registers a counter with labels.
func (r *Registry) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: r.namespace, Name: name, Help: help}, labels)
	r.MustRegister(c)
	return c
}

// Histogram registers a histogram.
func (r *Registry) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: r.namespace, Name: name, Help: help, Buckets: buckets})
	r.MustRegister(h)
	return h
}
