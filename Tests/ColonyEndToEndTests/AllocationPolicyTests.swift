import ColonyCoordinator
import ColonyWire
import XCTest

/// The rules of `colony coordinator --allocate slurm` (deploy/slurm/test-slurm.sh runs them
/// against a real one-host Slurm).
final class AllocationPolicyTests: XCTestCase {
    private let policy = AllocationPolicy(jobsMax: 2, idleSecondsBeforeDrain: 5)

    /// A status with `queued` tasks and nodes given as (name, threads, running tasks).
    private func report(queued: Int, nodes: [(name: String, threads: Int, running: Int)], draining: Set<String> = [],
                        processSlots: Int = 0) -> ClusterReport {
        var wire = Colony_V1_StatusReply()
        wire.queued = UInt64(queued)
        wire.nodes = nodes.map { node in
            var status = Colony_V1_NodeStatus()
            status.info.name = node.name
            status.info.threadSlots = UInt32(node.threads)
            status.info.processSlots = UInt32(processSlots)
            status.info.draining = draining.contains(node.name)
            status.running = UInt32(node.running)
            return status
        }
        return ClusterReport(wire: wire)
    }

    func testQueuedWorkWithNoNodeSubmitsOneJob() {
        var allocations: [AllocationPolicy.Allocation] = []
        XCTAssertTrue(policy.decide(report: report(queued: 10, nodes: []), allocations: &allocations, nowSeconds: 0).submit)
        XCTAssertFalse(policy.decide(report: report(queued: 0, nodes: []), allocations: &allocations, nowSeconds: 0).submit)
    }

    func testNoSecondJobWhileTheFirstWaitsToJoin() {
        var allocations = [AllocationPolicy.Allocation(jobID: "7")]
        XCTAssertFalse(policy.decide(report: report(queued: 10, nodes: []), allocations: &allocations, nowSeconds: 0).submit)
        XCTAssertEqual(AllocationPolicy.requested(allocations), 1)
    }

    func testAnotherJobOnlyWhenEveryThreadSlotIsBusy() {
        var allocations = [AllocationPolicy.Allocation(jobID: "7")]
        let busy = report(queued: 10, nodes: [("slurm-7", 2, 2)])
        XCTAssertTrue(policy.decide(report: busy, allocations: &allocations, nowSeconds: 0).submit)
        XCTAssertEqual(AllocationPolicy.running(allocations, report: busy), 1)
        XCTAssertEqual(AllocationPolicy.requested(allocations), 0)
        let free = report(queued: 10, nodes: [("slurm-7", 2, 1)])
        XCTAssertFalse(policy.decide(report: free, allocations: &allocations, nowSeconds: 0).submit)
    }

    /// Thread-pool work (the count handler) waits while a node's process pool is idle: the
    /// free process slots cannot take it.
    func testAFullThreadPoolAllocatesEvenWithFreeProcessSlots() {
        var allocations = [AllocationPolicy.Allocation(jobID: "7")]
        let threadsBusy = report(queued: 10, nodes: [("slurm-7", 2, 2)], processSlots: 2)
        XCTAssertTrue(policy.decide(report: threadsBusy, allocations: &allocations, nowSeconds: 0).submit)
    }

    /// Waiting handlers (fetch, sleep) hold io slots: a full io pool is a full pool too.
    func testAFullIOPoolAllocates() {
        var allocations = [AllocationPolicy.Allocation(jobID: "7")]
        var wire = Colony_V1_StatusReply()
        wire.queued = 10
        var node = Colony_V1_NodeStatus()
        node.info.name = "slurm-7"
        node.info.threadSlots = 2
        node.info.ioSlots = 4
        node.running = 4
        node.runningIo = 4
        wire.nodes = [node]
        XCTAssertTrue(policy.decide(report: ClusterReport(wire: wire), allocations: &allocations, nowSeconds: 0).submit)
    }

    func testNeverMoreThanJobsMax() {
        var allocations = [AllocationPolicy.Allocation(jobID: "7"), AllocationPolicy.Allocation(jobID: "8")]
        let busy = report(queued: 100, nodes: [("slurm-7", 2, 2), ("slurm-8", 2, 2)])
        XCTAssertFalse(policy.decide(report: busy, allocations: &allocations, nowSeconds: 0).submit)
    }

    func testAnIdleAllocatedNodeIsDrainedOnceAfterTheIdleTime() {
        var allocations = [AllocationPolicy.Allocation(jobID: "7")]
        let idle = report(queued: 0, nodes: [("slurm-7", 2, 0), ("mine", 2, 0)])
        XCTAssertEqual(policy.decide(report: idle, allocations: &allocations, nowSeconds: 10).drain, [])
        XCTAssertEqual(policy.decide(report: idle, allocations: &allocations, nowSeconds: 14.9).drain, [])
        // Only the allocated node: a node started by hand is not the allocator's to stop.
        XCTAssertEqual(policy.decide(report: idle, allocations: &allocations, nowSeconds: 15).drain, ["slurm-7"])
        XCTAssertEqual(policy.decide(report: idle, allocations: &allocations, nowSeconds: 30).drain, [])
    }

    func testQueuedWorkRestartsTheIdleClock() {
        var allocations = [AllocationPolicy.Allocation(jobID: "7")]
        let idle = report(queued: 0, nodes: [("slurm-7", 2, 0)])
        _ = policy.decide(report: idle, allocations: &allocations, nowSeconds: 0)
        _ = policy.decide(report: report(queued: 3, nodes: [("slurm-7", 2, 1)]), allocations: &allocations, nowSeconds: 4)
        XCTAssertEqual(policy.decide(report: idle, allocations: &allocations, nowSeconds: 6).drain, [])
        XCTAssertEqual(policy.decide(report: idle, allocations: &allocations, nowSeconds: 11).drain, ["slurm-7"])
    }

    func testADrainingNodeHasNoFreeSlotsAndIsNotDrainedAgain() {
        var allocations = [AllocationPolicy.Allocation(jobID: "7")]
        let draining = report(queued: 5, nodes: [("slurm-7", 2, 0)], draining: ["slurm-7"])
        let decision = policy.decide(report: draining, allocations: &allocations, nowSeconds: 100)
        XCTAssertTrue(decision.submit)
        XCTAssertEqual(decision.drain, [])
    }
}
