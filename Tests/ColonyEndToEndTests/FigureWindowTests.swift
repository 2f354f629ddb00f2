@testable import ColonyCoordinator
import ColonyWire
import XCTest

/// The last minute's figures behind `colony top` and the dashboard.
final class FigureWindowTests: XCTestCase {
    /// Readers (a dashboard polling every second, scrapes) used to close a slot on every read,
    /// so with two readers "the last minute" covered 30 s. Only the clock closes seconds now.
    func testReadingOftenDoesNotShortenTheMinute() {
        var window = FigureWindow()
        var finished: UInt64 = 0
        for second in 0...120 {
            finished += 10
            // Five reads within the second take samples in without closing anything.
            for _ in 0..<5 { window.absorb(queueWaits: [0.001], runTimes: [0.002]) }
            window.closeSecond(at: Double(second), finishedTotal: finished)
        }
        XCTAssertEqual(window.slots.count, FigureWindow.seconds + 1)
        XCTAssertEqual(window.slots.first?.at, 60, "the window spans the last minute")
        XCTAssertEqual(window.rate(over: 60, finishedTotal: finished, now: 120), 10, accuracy: 0.01)
        let p50 = window.percentiles(\.queueWaits)?.p50 ?? 0
        XCTAssertEqual(p50, 0.001, accuracy: 0.0002, "10% buckets")
    }

    func testSamplesNotYetInAClosedSecondCount() {
        var window = FigureWindow()
        window.absorb(queueWaits: [], runTimes: [0.5])
        XCTAssertEqual(window.percentiles(\.runTimes)?.p99 ?? 0, 0.5, accuracy: 0.06)
    }

    /// A latency figure is absent only when the coordinator sent none: a run time without a
    /// queue wait (tasks restored and finished, none started this minute) keeps its run time,
    /// and a p99 of 0 ms is a figure. Before, both were dropped unless some p99 was non-zero.
    func testAReportDropsOnlyTheLatencyFiguresThatWereNotSent() {
        var reply = Colony_V1_StatusReply()
        reply.figures.runTimeP50Ms = 0
        reply.figures.runTimeP99Ms = 0
        var report = ClusterReport(wire: reply)
        XCTAssertEqual(report.runTimeP99Ms, 0, "sent as 0 ms: a figure")
        XCTAssertNil(report.queueWaitP99Ms, "not sent")
        reply.figures.clearRunTimeP50Ms()
        reply.figures.clearRunTimeP99Ms()
        report = ClusterReport(wire: reply)
        XCTAssertNil(report.runTimeP50Ms)
        XCTAssertNil(report.runTimeP99Ms)
    }
}
