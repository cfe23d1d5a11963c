package layercache

import (
	"fmt"
	"strconv"
	"strings"
)

// CacheSettings reads the keys of a registry's `storage.cache` section into o, for
// every distribution line: `blobdescriptor` (and 2.x's `layerinfo`) are the line's,
// `cluster`, `localentries` and `localbytes` layercache's own; every other key goes to line (the
// adapter's keys), which reports whether it knows it. Keys match without regard to
// case (environment overrides such as REGISTRY_STORAGE_CACHE_ENABLETLS=true); an
// unknown key or a value of the wrong type is an error, so a misspelt setting does not
// pass unnoticed.
func CacheSettings(o *Options, settings map[string]interface{}, line func(name, key string, value interface{}) (bool, error)) error {
	for key, value := range settings {
		name := strings.ToLower(key)
		var err error
		switch name {
		case "blobdescriptor", "layerinfo":
		case "cluster":
			o.Cluster, err = SettingBool(key, value)
		case "localentries":
			n, ok := value.(int)
			if !ok || n < 0 {
				err = fmt.Errorf("layercache: storage.cache.%s must be a number of entries, not %v", key, value)
			}
			o.LocalEntries = n
		case "localbytes":
			n, ok := value.(int)
			if !ok || n < 0 {
				err = fmt.Errorf("layercache: storage.cache.%s must be a number of bytes, not %v", key, value)
			}
			o.LocalBytes = n
		default:
			var known bool
			if known, err = line(name, key, value); err == nil && !known {
				err = fmt.Errorf("layercache: unknown setting storage.cache.%s", key)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// SettingBool takes YAML's booleans and their string forms ("true", "false").
func SettingBool(key string, value interface{}) (bool, error) {
	switch v := value.(type) {
	case bool:
		return v, nil
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b, nil
		}
	}
	return false, fmt.Errorf("layercache: storage.cache.%s must be true or false, not %v", key, value)
}

// SettingString takes a string.
func SettingString(key string, value interface{}) (string, error) {
	s, ok := value.(string)
	if !ok {
		return "", fmt.Errorf("layercache: storage.cache.%s must be a string, not %v", key, value)
	}
	return s, nil
}
