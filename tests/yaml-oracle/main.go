// yaml-oracle converts YAML to JSON with sigs.k8s.io/yaml, the library kubectl, Helm, Argo CD
// and Flux use, so the injector's own YAML handling can be checked against it.
//
// Input (stdin): a JSON array of YAML texts. Output (stdout): a JSON array with, per text,
// {"documents": [...]} or {"error": "..."}. Documents are split on "---" lines the way
// kubectl's YAML reader splits them; empty documents are dropped.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

type result struct {
	Documents []json.RawMessage `json:"documents,omitempty"`
	Error     string            `json:"error,omitempty"`
}

func convert(text string) result {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewBufferString(text)))
	var out result
	for {
		document, err := reader.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			return result{Error: err.Error()}
		}
		converted, err := yaml.YAMLToJSON(document)
		if err != nil {
			return result{Error: err.Error()}
		}
		if string(bytes.TrimSpace(converted)) == "null" {
			continue
		}
		out.Documents = append(out.Documents, converted)
	}
}

func main() {
	var texts []string
	if err := json.NewDecoder(os.Stdin).Decode(&texts); err != nil {
		panic(err)
	}
	results := make([]result, 0, len(texts))
	for _, text := range texts {
		results = append(results, convert(text))
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		panic(err)
	}
}
