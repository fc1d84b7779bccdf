// Package config reads Airlock's YAML configuration files strictly: an
// unknown key, a value of the wrong type or a second document is an error
// that names the file, the line and the key.
package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goccy/go-yaml"
)

// Load reads the YAML file into v, refusing unknown keys.
func Load(file string, v any) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	return Decode(file, data, v)
}

// Decode decodes YAML data into v, refusing unknown keys; name says where
// the data came from in errors.
func Decode(name string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField())
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config %s: %s", name, yaml.FormatError(err, false, true))
	}
	return nil
}

// Resolve returns path as it is when it is empty or absolute, and else
// relative to the folder of the configuration file that named it, so that
// a configuration means the same whatever the working directory.
func Resolve(configFile, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(configFile), path)
}
