import CNNG
import Foundation
@testable import NNG
import XCTest

/// How Swift task cancellation reaches an nng aio.
final class AsyncOperationTests: XCTestCase {
    /// The window between the operation being marked started and nng being handed the aio:
    /// a cancellation arriving there used to be lost, and the receive waited out its timeout.
    func testACancellationJustBeforeNNGHasTheAioStillEndsTheOperation() async throws {
        let socket = try Socket(.pull)
        defer { socket.close() }
        try socket.listen("inproc://cancel-window-\(UUID().uuidString)")
        let raw = socket.raw
        let operation = try AsyncOperation()
        let clock = ContinuousClock()
        let start = clock.now
        let outcome = await Task {
            await operation.run(timeoutMilliseconds: 10_000, cancellable: true) { aio in
                withUnsafeCurrentTask { $0?.cancel() }
                nng_recv_aio(raw, aio)
            }
        }.value
        XCTAssertEqual(outcome.code, Int32(NNG_ECANCELED.rawValue))
        XCTAssertLessThan(clock.now - start, .seconds(5))
    }
}
