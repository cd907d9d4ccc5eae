module github.com/dragonflyoss/dragonfly-injector/tests/yaml-oracle

go 1.24.0

require (
	k8s.io/apimachinery v0.33.4
	sigs.k8s.io/yaml v1.4.0
)

require sigs.k8s.io/json v0.0.0-20241010143419-9aa6b5e7a4b3 // indirect
