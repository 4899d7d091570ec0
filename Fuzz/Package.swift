// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for Kiln's loaders, as their own package so that the library's package
// stays free of sanitizer settings. Build and run with Fuzz/run.sh.
let package = Package(
    name: "KilnFuzz",
    dependencies: [.package(name: "Kiln", path: "..")],
    targets: [
        .executableTarget(
            name: "kiln-fuzz",
            dependencies: [.product(name: "Kiln", package: "Kiln"), .product(name: "KilnData", package: "Kiln")],
            path: "Sources/KilnFuzz",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    ]
)
