// swift-tools-version:6.0
// A package that uses Kiln the way its users do: a version requirement on a tagged release.
// scripts/check-client-package.sh replaces KILN_URL with a bare clone tagged 0.1.0.
import PackageDescription

let package = Package(
    name: "client",
    dependencies: [.package(url: "KILN_URL", from: "0.1.0")],
    targets: [.executableTarget(name: "client", dependencies: [.product(name: "Kiln", package: "Kiln")])]
)
