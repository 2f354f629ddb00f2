import Colony
import ColonyCoordinator

extension Coordinator.ListenFailure {
    /// The one line a user sees.
    var userError: ColonyError {
        switch self {
        case .nng(let error, let url): ColonyURL.describe(error, url: url)
        case .framed(let error, let url): ColonyURL.describe(error, url: url)
        case .badAddresses(let reason): .invalidURL("--listen", reason: reason)
        }
    }

    /// Listening failed because the address is taken.
    var isAddressInUse: Bool {
        switch self {
        case .nng(let error, _): error.isAddressInUse
        case .framed(let error, _): error.reason == .system(98)  // EADDRINUSE
        case .badAddresses: false
        }
    }
}
