// Command go-producer publishes data-market events (contract dm.v1) to dm.events
// the way the monitor expects: each JSONL line byte for byte as one message, keyed
// by product_id (exchange_id for heartbeats) and partitioned like Kafka's Java
// client, acks=all and idempotent. With -heartbeats it also sends the exchange's
// heartbeats. Given the exchange's key (-key-id or DM_KEY_ID, and DM_KEY_SECRET)
// it signs every message (signer.go). See README.md.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

// keyField is the contract's key per event type.
var keyField = map[string]string{
	"listing":   "product_id",
	"trade":     "product_id",
	"usage":     "product_id",
	"heartbeat": "exchange_id",
}

// contractKey is the message key of a line, or nil when the line is not a JSON
// object whose key field is a string (such a line is still sent, unkeyed, and the
// monitor rejects it with its reason).
func contractKey(line []byte) []byte {
	var fields map[string]json.RawMessage
	if json.Unmarshal(line, &fields) != nil {
		return nil
	}
	var kind, key string
	if json.Unmarshal(fields["type"], &kind) != nil {
		return nil
	}
	name, ok := keyField[kind]
	if !ok || json.Unmarshal(fields[name], &key) != nil {
		return nil
	}
	return []byte(key)
}

var chinaStandardTime = time.FixedZone("CST", 8*3600)

// heartbeat is the contract's heartbeat event; event_id stays unique when seq starts over.
func heartbeat(exchange string, seq int, at time.Time) []byte {
	event, _ := json.Marshal(map[string]any{
		"schema":      "dm.v1",
		"type":        "heartbeat",
		"event_id":    fmt.Sprintf("%s-H-%d-%d", exchange, at.UnixMilli(), seq),
		"exchange_id": exchange,
		"occurred_at": at.In(chinaStandardTime).Format("2006-01-02T15:04:05.000Z07:00"),
		"seq":         seq,
	})
	return event
}

func newProducer(brokers []string) (sarama.SyncProducer, error) {
	config := sarama.NewConfig()
	config.ClientID = "dmm-go-producer"
	config.Version = sarama.V2_0_0_0 // record batches
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Producer.Idempotent = true // retries never duplicate a message
	config.Net.MaxOpenRequests = 1    // required by Idempotent
	config.Producer.Retry.Max = 10
	config.Producer.Return.Successes = true
	config.Producer.Partitioner = NewJavaCompatiblePartitioner // NOT sarama's default (FNV-1a)
	return sarama.NewSyncProducer(brokers, config)
}

// message is one line as sent: keyed as the contract says, signed when sign is not nil.
func message(topic string, value []byte, sign *signer) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(value)}
	if key := contractKey(value); key != nil {
		m.Key = sarama.ByteEncoder(key)
	}
	if sign != nil {
		m.Headers = sign.headers(value)
	}
	return m
}

// sendFile publishes every line of path (without its newline, blank lines too), in order.
func sendFile(producer sarama.SyncProducer, topic, path string, sign *signer) (int, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	reader := bufio.NewReader(file)
	sent := 0
	for {
		line, readErr := reader.ReadBytes('\n')
		if len(line) > 0 {
			value := []byte(strings.TrimSuffix(string(line), "\n"))
			if _, _, err := producer.SendMessage(message(topic, value, sign)); err != nil {
				return sent, fmt.Errorf("%s line %d: %w", path, sent+1, err)
			}
			sent++
		}
		if readErr != nil {
			return sent, nil // io.EOF
		}
	}
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:19092", "comma-separated bootstrap brokers")
	topic := flag.String("topic", "dm.events", "events topic (with your prefix, if any)")
	exchange := flag.String("exchange", "", "exchange code (exchanges.csv) for -heartbeats")
	heartbeats := flag.Int("heartbeats", 0, "heartbeats to send after the files (-1: until killed)")
	every := flag.Duration("every", 10*time.Second, "interval between heartbeats")
	// The secret comes from the environment only: a command line is visible to every user of the host (ps).
	keyID := flag.String("key-id", os.Getenv("DM_KEY_ID"), "id of the exchange's key: sign every message (secret: DM_KEY_SECRET, hex)")
	flag.Parse()
	if *heartbeats != 0 && *exchange == "" {
		log.Fatal("-heartbeats needs -exchange")
	}
	sign, err := newSigner(*keyID, os.Getenv("DM_KEY_SECRET"))
	if err != nil {
		log.Fatal(err)
	}

	producer, err := newProducer(strings.Split(*brokers, ","))
	if err != nil {
		log.Fatalf("cannot connect to %s: %v", *brokers, err)
	}
	defer producer.Close()

	total := 0
	for _, path := range flag.Args() {
		sent, err := sendFile(producer, *topic, path, sign)
		total += sent
		if err != nil {
			log.Fatalf("after %d message(s): %v", total, err)
		}
	}
	for seq := 0; *heartbeats < 0 || seq < *heartbeats; seq++ {
		if seq > 0 {
			time.Sleep(*every)
		}
		if _, _, err := producer.SendMessage(message(*topic, heartbeat(*exchange, seq, time.Now()), sign)); err != nil {
			log.Fatalf("heartbeat %d: %v", seq, err)
		}
		total++
	}
	fmt.Printf("sent %d message(s) to %s\n", total, *topic)
}
