import CoreMetrics
import Prometheus

/// swift-metrics handlers in a Prometheus registry, each family with its `# HELP` line:
/// swift-prometheus's own `PrometheusMetricsFactory` makes every family without one, and
/// `promtool check metrics` refuses a family without one.
struct DescribedPrometheusMetrics: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    /// The buckets of every `Timer`'s histogram.
    let durationBuckets: [Duration]
    let valueBuckets: [Double]
    /// A family's description, by its name ("" leaves the family without one).
    let help: @Sendable (String) -> String

    /// The whole name in `metricName` (the descriptor joins its non-empty parts with "_").
    private func described(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help(label))
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: described(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: described(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: described(label), labels: dimensions) }
        return registry.makeValueHistogram(descriptor: described(label), labels: dimensions, buckets: valueBuckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: described(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: described(label), labels: dimensions, buckets: durationBuckets)
    }

    private var unregistering: PrometheusMetricsFactory { PrometheusMetricsFactory(registry: registry) }

    func destroyCounter(_ handler: any CounterHandler) { unregistering.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { unregistering.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { unregistering.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { unregistering.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { unregistering.destroyTimer(handler) }
}
