/// A handler's name and the types of its input and output: what a client needs to submit to it
/// typed, without the node's code. `TaskHandler` (in `ColonyNode`) refines it with `run`, so a
/// program that both defines and submits to a handler names one type for both.
public protocol HandlerSignature: Sendable {
    associatedtype Input: Codable & Sendable
    associatedtype Output: Codable & Sendable
    /// The name tasks use to ask for this handler.
    static var name: String { get }
}
