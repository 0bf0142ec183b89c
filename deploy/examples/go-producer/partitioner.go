package main

import "github.com/Shopify/sarama"

// murmur2 is Kafka's Java client hash (org.apache.kafka.common.utils.Utils.murmur2),
// bit for bit: seed 0x9747b28c, little-endian 4-byte blocks, the same tail and
// final mix. The Java code shifts with >>> on int, which is >> on uint32 here.
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// JavaPartition is the partition Kafka's Java client (and kafka-python, librdkafka's
// "murmur2_random") picks for a non-null key: toPositive(murmur2(key)) % partitions,
// where toPositive clears the sign bit (it is not an absolute value).
func JavaPartition(key []byte, partitions int32) int32 {
	return (murmur2(key) & 0x7fffffff) % partitions
}

// javaCompatiblePartitioner places keyed messages exactly where the Java client
// would, so that one product's events share a partition whichever client an
// exchange uses; unkeyed messages go to a random partition.
type javaCompatiblePartitioner struct {
	unkeyed sarama.Partitioner
}

// NewJavaCompatiblePartitioner is a sarama.PartitionerConstructor.
func NewJavaCompatiblePartitioner(topic string) sarama.Partitioner {
	return &javaCompatiblePartitioner{unkeyed: sarama.NewRandomPartitioner(topic)}
}

func (p *javaCompatiblePartitioner) Partition(message *sarama.ProducerMessage, partitions int32) (int32, error) {
	if message.Key == nil {
		return p.unkeyed.Partition(message, partitions)
	}
	key, err := message.Key.Encode()
	if err != nil {
		return -1, err
	}
	return JavaPartition(key, partitions), nil
}

// RequiresConsistency: a key must always map to the same partition.
func (p *javaCompatiblePartitioner) RequiresConsistency() bool { return true }
