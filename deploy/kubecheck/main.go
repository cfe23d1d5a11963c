// Command kubecheck strict-decodes Kubernetes manifests into k8s.io/api's types, as the
// API server would take them: every document of every file named must be a kind it
// knows, with no field its type lacks, and what the documents refer to must be there:
// a Deployment's selector matches its pod template, every volume mount names a volume,
// every ConfigMap, Secret and PersistentVolumeClaim a pod uses is in the files, and a
// Service selects a Deployment's pods and targets a port its containers name.
// It prints one line per document and exits 1 on the first problem; with -json first,
// those lines go to stderr and the documents, as one JSON array, to stdout (for
// scripts/regkit/kube.py).
// With -values first, the files are charts' values: every Kubernetes fragment they
// carry (lists of containers, volumes, volume mounts, environment variables, under
// the keys charts use for them) is strict-decoded, and the values are printed as one
// JSON array.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	named       map[string]bool // kind/name
	docs        []json.RawMessage
	asJSON      bool
}

func main() {
	m := &manifests{named: map[string]bool{}}
	paths := os.Args[1:]
	if len(paths) > 0 && paths[0] == "-values" {
		checkValues(paths[1:])
		return
	}
	if len(paths) > 0 && paths[0] == "-json" {
		m.asJSON, paths = true, paths[1:]
	}
	for _, path := range paths {
		if err := m.read(path); err != nil {
			fail("%s: %v", path, err)
		}
	}
	for _, d := range m.deployments {
		if err := m.checkDeployment(d); err != nil {
			fail("Deployment %s: %v", d.Name, err)
		}
	}
	for _, s := range m.services {
		if err := m.checkService(s); err != nil {
			fail("Service %s: %v", s.Name, err)
		}
	}
	if m.asJSON {
		out, _ := json.Marshal(m.docs)
		fmt.Println(string(out))
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kubecheck: "+format+"\n", args...)
	os.Exit(1)
}

func (m *manifests) read(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return fmt.Errorf("document %d: %w", i+1, err)
		}
		if meta.APIVersion == "" && meta.Kind == "" {
			continue // comments only
		}
		var obj interface{ GetName() string }
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1 Secret":
			obj = &corev1.Secret{}
		case "v1 PersistentVolumeClaim":
			obj = &corev1.PersistentVolumeClaim{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "apps/v1 Deployment":
			obj = &appsv1.Deployment{}
		default:
			return fmt.Errorf("document %d: unknown kind %s %s", i+1, meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return fmt.Errorf("document %d (%s): %w", i+1, meta.Kind, err)
		}
		key := meta.Kind + "/" + obj.GetName()
		if obj.GetName() == "" || m.named[key] {
			return fmt.Errorf("document %d: %s without a name or twice", i+1, key)
		}
		m.named[key] = true
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		}
		asJSON, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return fmt.Errorf("document %d: %w", i+1, err)
		}
		m.docs = append(m.docs, asJSON)
		out := os.Stdout
		if m.asJSON {
			out = os.Stderr
		}
		fmt.Fprintf(out, "kubecheck: %s: %s %s\n", path, meta.Kind, obj.GetName())
	}
	return nil
}

func (m *manifests) checkDeployment(d *appsv1.Deployment) error {
	spec := d.Spec.Template.Spec
	if d.Spec.Selector == nil || !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		return fmt.Errorf("its selector does not match its pod template's labels")
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
		switch {
		case v.ConfigMap != nil && !m.named["ConfigMap/"+v.ConfigMap.Name]:
			return fmt.Errorf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
		case v.Secret != nil && !m.named["Secret/"+v.Secret.SecretName]:
			return fmt.Errorf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
		case v.PersistentVolumeClaim != nil && !m.named["PersistentVolumeClaim/"+v.PersistentVolumeClaim.ClaimName]:
			return fmt.Errorf("volume %s: no PersistentVolumeClaim %s", v.Name, v.PersistentVolumeClaim.ClaimName)
		}
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if c.Image == "" {
			return fmt.Errorf("container %s has no image", c.Name)
		}
		for _, mount := range c.VolumeMounts {
			if !volumes[mount.Name] {
				return fmt.Errorf("container %s mounts %s, which is no volume", c.Name, mount.Name)
			}
		}
		for _, e := range c.Env {
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && !m.named["Secret/"+r.SecretKeyRef.Name] {
				return fmt.Errorf("container %s: %s from no Secret %s", c.Name, e.Name, r.SecretKeyRef.Name)
			}
			if r := e.ValueFrom; r != nil && r.ConfigMapKeyRef != nil && !m.named["ConfigMap/"+r.ConfigMapKeyRef.Name] {
				return fmt.Errorf("container %s: %s from no ConfigMap %s", c.Name, e.Name, r.ConfigMapKeyRef.Name)
			}
		}
	}
	return nil
}

func (m *manifests) checkService(s *corev1.Service) error {
	for _, d := range m.deployments {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		ports := map[string]bool{}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				ports[p.Name] = true
				ports[fmt.Sprint(p.ContainerPort)] = true
			}
		}
		for _, p := range s.Spec.Ports {
			if !ports[p.TargetPort.String()] {
				return fmt.Errorf("port %s targets %s, which Deployment %s's containers do not name", p.Name, p.TargetPort.String(), d.Name)
			}
		}
		return nil
	}
	return fmt.Errorf("selects no Deployment's pods")
}

// fragments are the values keys whose lists hold Kubernetes objects, and their types.
var fragments = map[string]func() any{
	"initContainers": func() any { return &corev1.Container{} }, "extraInitContainers": func() any { return &corev1.Container{} },
	"extraVolumes": func() any { return &corev1.Volume{} }, "extraVolumeMounts": func() any { return &corev1.VolumeMount{} },
	"extraEnvVars": func() any { return &corev1.EnvVar{} },
}

func checkValues(paths []string) {
	var all []any
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			fail("%v", err)
		}
		var values any
		if err := yaml.Unmarshal(data, &values); err != nil {
			fail("%s: %v", path, err)
		}
		n, err := walk(values, "")
		if err != nil {
			fail("%s: %v", path, err)
		}
		fmt.Fprintf(os.Stderr, "kubecheck: %s: %d Kubernetes fragments\n", path, n)
		all = append(all, values)
	}
	out, _ := json.Marshal(all)
	fmt.Println(string(out))
}

// walk strict-decodes the fragments under v (at path); how many.
func walk(v any, path string) (int, error) {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		for key, child := range v {
			if newObject, ok := fragments[key]; ok {
				list, ok := child.([]any)
				if !ok {
					return n, fmt.Errorf("%s.%s: not a list", path, key)
				}
				for i, item := range list {
					raw, _ := json.Marshal(item)
					if err := yaml.UnmarshalStrict(raw, newObject()); err != nil {
						return n, fmt.Errorf("%s.%s[%d]: %w", path, key, i, err)
					}
					n++
				}
				continue
			}
			m, err := walk(child, path+"."+key)
			if n += m; err != nil {
				return n, err
			}
		}
	case []any:
		for i, child := range v {
			m, err := walk(child, fmt.Sprintf("%s[%d]", path, i))
			if n += m; err != nil {
				return n, err
			}
		}
	}
	return n, nil
}
