import ColonyCore
import ColonyModel
@testable import ColonyStore
import Foundation
import XCTest

/// A task's resource request survives a restart, exactly (fractions and byte amounts).
final class ResourceJournalTests: XCTestCase {
    func testResourceVariantsComeBackAfterReopening() async throws {
        let folder = NSTemporaryDirectory() + "colony-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try Store(directory: folder)
        store.start()
        var options = TaskOptions()
        options.resources = [ResourceVariant(cpus: 2, amounts: ["gpus": ResourceAmount.one / 2, "mem": ResourceAmount.parse("1.5G")!]),
                             ResourceVariant(cpus: 8)]
        var core = CoordinatorCore()
        core.journaling = true
        let ids = try core.submit([TaskSubmission(handler: "work", input: [], options: options), TaskSubmission(handler: "echo", input: [])],
                                  session: "s")
        try await store.waitDurable(store.append(core.takeJournal(), nextID: ids[1] + 1))
        store.close()

        let reopened = try Store(directory: folder)
        let state = try reopened.recover()
        reopened.close()
        XCTAssertEqual(state.tasks.map(\.submission.options.resources), [options.resources, []])
    }
}
