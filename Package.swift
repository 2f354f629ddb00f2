// swift-tools-version: 6.0
import PackageDescription

// The module graph points one way (see docs/ARCHITECTURE.md):
// CNNG -> NNG -> ColonyWire / ColonyCore -> ColonyCoordinator, ColonyNode, Colony -> ColonyCLI -> colony
// CSQLite -> ColonyStore (the journal, on ColonyCore) -> ColonyCoordinator
let package = Package(
    name: "Colony",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "colony", targets: ["colony"]),
        .library(name: "Colony", targets: ["Colony"]),
        .library(name: "ColonyCLI", targets: ["ColonyCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.30.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        // Job files (`colony submit-file`): TOML, and YAML for .yaml/.yml.
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CNNG",
            providers: [.apt(["libnng-dev"])]
        ),
        .target(name: "NNG", dependencies: ["CNNG"]),
        .systemLibrary(
            name: "CSQLite",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // The coordinator's journal: the only module touching SQLite.
        .target(name: "ColonyStore", dependencies: ["CSQLite", "ColonyCore"]),
        .target(name: "ColonyWire", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "ColonyCore"),
        // The core driven at cluster scale on simulated time (the scale test and `colony bench`).
        .target(name: "ColonySimulation", dependencies: ["ColonyCore"]),
        .target(name: "ColonyCoordinator", dependencies: [
            "NNG", "ColonyWire", "ColonyCore", "ColonyStore",
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The coordinator's HTTP side: Prometheus metrics, the JSON API and the dashboard.
        .target(name: "ColonyHTTP", dependencies: [
            "NNG", "ColonyWire", "ColonyCore", "ColonyCoordinator",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        .target(name: "ColonyNode", dependencies: ["NNG", "ColonyWire", "ColonyCore"]),
        .target(name: "Colony", dependencies: ["NNG", "ColonyWire", "ColonyCore", "ColonyNode", "ColonyCoordinator", "ColonyStore"]),
        .target(name: "ColonyCLI", dependencies: [
            "NNG",
            "Colony",
            "ColonySimulation",
            "ColonyHTTP",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "colony", dependencies: ["ColonyCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The README's "your own node executable", built and tested with the package.
        .executableTarget(name: "colony-square-node", dependencies: ["Colony", "ColonyCLI"], path: "Examples/SquareNode"),
        // The fuzzer's harness (a conversation of raw requests against a fresh coordinator
        // state) and its entry point: a replayer in every build, a libFuzzer target when built
        // by scripts/fuzz.sh.
        .target(name: "ColonyFuzzing", dependencies: ["ColonyCoordinator", "ColonyWire"], path: "Fuzz/Harness"),
        .executableTarget(name: "colony-fuzz", dependencies: ["ColonyFuzzing"], path: "Fuzz/Main"),
        .testTarget(name: "NNGTests", dependencies: ["NNG"]),
        .testTarget(name: "ColonyWireTests", dependencies: ["ColonyWire", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .testTarget(name: "ColonyCoreTests", dependencies: ["ColonyCore", "ColonySimulation"]),
        .testTarget(name: "ColonyStoreTests", dependencies: ["ColonyStore", "ColonyCore"]),
        .testTarget(name: "ColonyFuzzingTests", dependencies: ["ColonyFuzzing"]),
        .testTarget(name: "ColonyEndToEndTests", dependencies: ["Colony", "NNG", "ColonyWire"]),
    ],
    swiftLanguageModes: [.v6]
)
